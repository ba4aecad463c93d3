//! Infini-attention against a naive f64 reference written with loops.

mod common;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use common::*;
use infini_model::rope::Rope;
use infini_model::{InfiniAttention, LayerMemory, Memory, MemoryKind, XlCache, sigma as sigma_t};

const TOL: f64 = 1e-4;

/// Flat [B][H][N][d] buffer → per (b, h) matrices.
fn split(flat: &[f64], b: usize, h: usize, n: usize, d: usize) -> Vec<Vec<Mat>> {
    (0..b).map(|bi| (0..h).map(|hi| rows(&flat[(bi * h + hi) * n * d..][..n * d], n, d)).collect()).collect()
}

fn flatten(per_bh: &[Vec<Mat>]) -> Vec<f64> {
    per_bh.iter().flatten().flatten().flatten().copied().collect()
}

#[test]
fn memory_retrieval_and_updates_match_reference_over_segments() {
    let device = Device::flex();
    let mut rng = rng(1);
    // (batch, heads, tokens, d_k, d_v): d_v ≠ d_k catches transposed memories.
    for (case, &(b, h, n, dk, dv)) in [(1, 1, 3, 2, 2), (2, 3, 5, 4, 6), (3, 2, 7, 8, 3)].iter().enumerate() {
        for rule in [MemoryKind::Linear, MemoryKind::Delta] {
            let mut memory = Memory::empty(b, h, dk, dv, &device);
            let mut reference: Vec<Vec<RefMemory>> = vec![vec![RefMemory::empty(dk, dv); h]; b];
            for segment in 0..4 {
                let q = random_vec(&mut rng, b * h * n * dk, 2.0);
                let k = random_vec(&mut rng, b * h * n * dk, 2.0);
                let v = random_vec(&mut rng, b * h * n * dv, 2.0);
                let sq = sigma_t(tensor(&q, [b, h, n, dk], &device));
                let sk = sigma_t(tensor(&k, [b, h, n, dk], &device));
                let vt = tensor(&v, [b, h, n, dv], &device);

                let got = to_vec(memory.retrieve(sq));
                let (qs, ks, vs) = (split(&q, b, h, n, dk), split(&k, b, h, n, dk), split(&v, b, h, n, dv));
                let want: Vec<Vec<Mat>> = (0..b)
                    .map(|bi| (0..h).map(|hi| reference[bi][hi].retrieve(&map(&qs[bi][hi], sigma))).collect())
                    .collect();
                let want = flatten(&want);
                if segment == 0 {
                    assert!(got.iter().all(|&x| x == 0.0), "empty memory must read exactly 0, got {got:?}");
                }
                let e = rel_err(&got, &want);
                assert!(e <= TOL, "case {case} {rule:?} segment {segment}: retrieval rel err {e}");

                memory = match rule {
                    MemoryKind::Linear => memory.update_linear(sk, vt),
                    _ => memory.update_delta(sk, vt),
                };
                for bi in 0..b {
                    for hi in 0..h {
                        reference[bi][hi].update(&map(&ks[bi][hi], sigma), &vs[bi][hi], rule);
                    }
                }
                let want_m: Vec<f64> = reference.iter().flatten().flat_map(|r| r.m.iter().flatten().copied()).collect();
                let want_z: Vec<f64> = reference.iter().flatten().flat_map(|r| r.z.iter().copied()).collect();
                let (em, ez) = (rel_err(&to_vec(memory.m.clone()), &want_m), rel_err(&to_vec(memory.z.clone()), &want_z));
                assert!(em <= TOL && ez <= TOL, "case {case} {rule:?} segment {segment}: M err {em}, z err {ez}");
            }
        }
    }
}

fn weights(t: Tensor<2>) -> Mat {
    let [r, c] = t.dims();
    rows(&to_vec(t), r, c)
}

#[test]
fn attention_layer_matches_reference_over_segments() {
    let device = Device::flex();
    let mut rng = rng(2);
    for rule in [MemoryKind::Linear, MemoryKind::Delta, MemoryKind::None] {
        let config = test_config(rule);
        let (b, n, d, h, dk) = (2, config.segment_len, config.d_model, config.n_heads, config.head_dim());
        let mut layer = InfiniAttention::new(&config, 0.3, &device);
        let beta = random_vec(&mut rng, h, 2.0);
        if rule != MemoryKind::None {
            layer.beta = Some(Param::from_tensor(tensor(&beta, [h], &device)));
        }
        let reference = RefLayer {
            wq: weights(layer.wq.weight.val()),
            wk: weights(layer.wk.weight.val()),
            wv: weights(layer.wv.weight.val()),
            wo: weights(layer.wo.weight.val()),
            beta,
            n_heads: h,
            head_dim: dk,
            theta: config.rope_theta,
            rule,
        };
        let rope = Rope::new(n, dk, config.rope_theta, &device);
        let mut memory = rule.has_memory().then(|| LayerMemory::Compressive(Memory::empty(b, h, dk, dk, &device)));
        let mut ref_memories = vec![vec![RefMemory::empty(dk, dk); h]; b];
        for segment in 0..3 {
            let x = random_vec(&mut rng, b * n * d, 1.0);
            let (out, next) = layer.forward(tensor(&x, [b, n, d], &device), &rope, memory);
            memory = next;
            let got = to_vec(out);
            let want: Vec<f64> = (0..b)
                .flat_map(|bi| reference.forward(&rows(&x[bi * n * d..][..n * d], n, d), &mut ref_memories[bi]))
                .flatten()
                .collect();
            let e = rel_err(&got, &want);
            assert!(e <= TOL, "{rule:?} segment {segment}: layer output rel err {e}");
        }
    }
}

#[test]
fn transformer_xl_baseline_attends_to_the_previous_segment() {
    let device = Device::flex();
    let mut rng = rng(9);
    let config = test_config(MemoryKind::Xl);
    let (b, n, d, h, dk) = (2, config.segment_len, config.d_model, config.n_heads, config.head_dim());
    let layer = InfiniAttention::new(&config, 0.3, &device);
    let reference = RefLayer {
        wq: weights(layer.wq.weight.val()),
        wk: weights(layer.wk.weight.val()),
        wv: weights(layer.wv.weight.val()),
        wo: weights(layer.wo.weight.val()),
        beta: vec![],
        n_heads: h,
        head_dim: dk,
        theta: config.rope_theta,
        rule: MemoryKind::None,
    };
    let rope = Rope::new(2 * n, dk, config.rope_theta, &device);
    let empty = XlCache { k: Tensor::zeros([b, h, n, dk], &device), v: Tensor::zeros([b, h, n, dk], &device), valid: vec![false; b] };
    let x1 = random_vec(&mut rng, b * n * d, 1.0);
    let x2 = random_vec(&mut rng, b * n * d, 1.0);
    let (out1, memory) = layer.forward(tensor(&x1, [b, n, d], &device), &rope, Some(LayerMemory::Xl(empty)));
    // The first segment sees nothing before it: plain causal attention.
    let want1: Vec<f64> = (0..b).flat_map(|bi| reference.forward(&rows(&x1[bi * n * d..][..n * d], n, d), &mut [])).flatten().collect();
    assert!(rel_err(&to_vec(out1), &want1) <= TOL);
    // The second segment attends causally over [segment 1, segment 2]: the same as the last n
    // outputs of plain causal attention over the 2n tokens (RoPE is relative).
    let (out2, _) = layer.forward(tensor(&x2, [b, n, d], &device), &rope, memory);
    let want2: Vec<f64> = (0..b)
        .flat_map(|bi| {
            let mut both = rows(&x1[bi * n * d..][..n * d], n, d);
            both.extend(rows(&x2[bi * n * d..][..n * d], n, d));
            reference.forward(&both, &mut []).split_off(n)
        })
        .flatten()
        .collect();
    let e = rel_err(&to_vec(out2), &want2);
    assert!(e <= TOL, "XL second segment rel err {e}");
}
