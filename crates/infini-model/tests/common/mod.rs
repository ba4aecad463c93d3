//! Test helpers: random tensors and a naive f64 reference of Infini-attention written with loops.
#![allow(dead_code)]

use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{MemoryKind, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_vec(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0) * scale).collect()
}

pub fn tensor<const D: usize>(values: &[f64], shape: [usize; D], device: &Device) -> Tensor<D> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

pub fn tokens(rng: &mut StdRng, batch: usize, len: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..batch * len).map(|_| rng.random_range(0..vocab as i64)).collect();
    Tensor::from_data(TensorData::new(ids, [batch, len]), device)
}

/// max |a − b| / max |b|: the error relative to the reference's scale.
pub fn rel_err(actual: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(actual.len(), reference.len());
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    actual.iter().zip(reference).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// ‖a − b‖₂ / ‖b‖₂: the error relative to the reference's root-mean-square. Steadier than
/// `rel_err` for rounding noise, whose largest element wanders from one random init to the next.
pub fn rel_rms_err(actual: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(actual.len(), reference.len());
    let num: f64 = actual.iter().zip(reference).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = reference.iter().map(|b| b * b).sum();
    (num / den.max(1e-24)).sqrt()
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// A small config with weights large enough that every path matters.
pub fn test_config(memory: MemoryKind) -> ModelConfig {
    ModelConfig {
        vocab_size: 50,
        d_model: 24,
        n_layers: 2,
        n_heads: 3,
        n_kv_heads: None,
        head_dim: None,
        ffn_hidden: 40,
        segment_len: 8,
        memory,
        gate_init: 0.0,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        tie_embeddings: true,
        dropout: 0.0,
        init_std: 0.3,
    }
}

// ---------------------------------------------------------------------------------------------
// Naive reference. Matrices are Vec<Vec<f64>> indexed [row][col]; one head of one sequence.

pub type Mat = Vec<Vec<f64>>;

pub fn sigma(x: f64) -> f64 {
    if x > 0.0 { x + 1.0 } else { x.exp() }
}

/// One head's memory: m [d_k][d_v], z [d_k].
#[derive(Clone)]
pub struct RefMemory {
    pub m: Mat,
    pub z: Vec<f64>,
}

impl RefMemory {
    pub fn empty(dk: usize, dv: usize) -> Self {
        Self { m: vec![vec![0.0; dv]; dk], z: vec![0.0; dk] }
    }

    /// σ(q) M / σ(q) z for each row of q (already σ'd), 0 when the memory is empty.
    pub fn retrieve(&self, sq: &Mat) -> Mat {
        let dv = self.m[0].len();
        sq.iter()
            .map(|row| {
                let den: f64 = row.iter().zip(&self.z).map(|(a, b)| a * b).sum();
                (0..dv)
                    .map(|j| {
                        let num: f64 = row.iter().enumerate().map(|(i, a)| a * self.m[i][j]).sum();
                        if den == 0.0 { 0.0 } else { num / den }
                    })
                    .collect()
            })
            .collect()
    }

    pub fn update(&mut self, sk: &Mat, v: &Mat, rule: MemoryKind) {
        let written: Mat = match rule {
            MemoryKind::Linear => v.clone(),
            MemoryKind::Delta => {
                let old = self.retrieve(sk);
                v.iter().zip(&old).map(|(vr, or)| vr.iter().zip(or).map(|(a, b)| a - b).collect()).collect()
            }
            MemoryKind::None | MemoryKind::Xl => panic!("no compressive memory"),
        };
        for (t, krow) in sk.iter().enumerate() {
            for (i, &kv) in krow.iter().enumerate() {
                self.z[i] += kv;
                for j in 0..written[t].len() {
                    self.m[i][j] += kv * written[t][j];
                }
            }
        }
    }
}

pub fn map(m: &Mat, f: impl Fn(f64) -> f64) -> Mat {
    m.iter().map(|r| r.iter().map(|&v| f(v)).collect()).collect()
}

/// Rows of a flat [n][cols] buffer.
pub fn rows(flat: &[f64], n: usize, cols: usize) -> Mat {
    (0..n).map(|i| flat[i * cols..(i + 1) * cols].to_vec()).collect()
}

/// x [n][d_in] · w [d_in][d_out] (Burn's row layout).
pub fn matmul(x: &Mat, w: &Mat) -> Mat {
    x.iter()
        .map(|row| (0..w[0].len()).map(|j| row.iter().enumerate().map(|(i, a)| a * w[i][j]).sum()).collect())
        .collect()
}

/// Half-split RoPE at positions 0..n.
pub fn rope(x: &Mat, theta: f64) -> Mat {
    let d = x[0].len();
    let half = d / 2;
    x.iter()
        .enumerate()
        .map(|(pos, row)| {
            let mut out = vec![0.0; d];
            for i in 0..half {
                let angle = pos as f64 / theta.powf(2.0 * i as f64 / d as f64);
                let (s, c) = angle.sin_cos();
                out[i] = row[i] * c - row[i + half] * s;
                out[i + half] = row[i + half] * c + row[i] * s;
            }
            out
        })
        .collect()
}

/// Causal softmax attention softmax(q kᵀ / √d) v.
pub fn causal_attention(q: &Mat, k: &Mat, v: &Mat) -> Mat {
    let d = q[0].len() as f64;
    q.iter()
        .enumerate()
        .map(|(t, qr)| {
            let scores: Vec<f64> =
                (0..=t).map(|s| qr.iter().zip(&k[s]).map(|(a, b)| a * b).sum::<f64>() / d.sqrt()).collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = w.iter().sum();
            (0..v[0].len()).map(|j| (0..=t).map(|s| w[s] / total * v[s][j]).sum()).collect()
        })
        .collect()
}

/// Weights of one Infini-attention layer, as plain matrices.
pub struct RefLayer {
    pub wq: Mat,
    pub wk: Mat,
    pub wv: Mat,
    pub wo: Mat,
    pub beta: Vec<f64>,
    pub n_heads: usize,
    pub head_dim: usize,
    pub theta: f64,
    pub rule: MemoryKind,
}

impl RefLayer {
    /// One segment `x [n][d_model]` of one sequence, with per-head memories updated in place.
    pub fn forward(&self, x: &Mat, memories: &mut [RefMemory]) -> Mat {
        let (h, dk) = (self.n_heads, self.head_dim);
        let (q, k, v) = (matmul(x, &self.wq), matmul(x, &self.wk), matmul(x, &self.wv));
        let head = |m: &Mat, i: usize| -> Mat { m.iter().map(|r| r[i * dk..(i + 1) * dk].to_vec()).collect() };
        let mut concat: Mat = vec![Vec::with_capacity(h * dk); x.len()];
        for i in 0..h {
            let (qh, kh, vh) = (head(&q, i), head(&k, i), head(&v, i));
            let local = causal_attention(&rope(&qh, self.theta), &rope(&kh, self.theta), &vh);
            let out = if self.rule == MemoryKind::None {
                local
            } else {
                let retrieved = memories[i].retrieve(&map(&qh, sigma));
                memories[i].update(&map(&kh, sigma), &vh, self.rule);
                let g = 1.0 / (1.0 + (-self.beta[i]).exp());
                local
                    .iter()
                    .zip(&retrieved)
                    .map(|(l, r)| l.iter().zip(r).map(|(a, b)| g * b + (1.0 - g) * a).collect())
                    .collect()
            };
            for (row, o) in concat.iter_mut().zip(out) {
                row.extend(o);
            }
        }
        matmul(&concat, &self.wo)
    }
}
