//! The blocks' layers as host operations ([`super::op`]): the projections' products (into
//! buffers of our own, [`super::gemm`]), causal attention, SwiGLU's gating, RMSNorm and RoPE,
//! each one threaded pass forward and one backward on Flex, where Burn's formulation takes 2–7
//! single-threaded passes forward and about twice as many backward. Each returns
//! `None` where [`super::op::apply`] does (not f32 tensors on Flex); the model then runs the
//! tensor-op formulation, which the tests compare against.

use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::gemm::{Mat, gemm_into, product};
use super::op::{apply, flex_tensor, values};
use super::{CHUNK, SoftmaxRow, silu, simd};

/// `x·w` for `x: [.., d_in]` and `w: [1, .., 1, d_in, d_out]` (a linear layer's weight, with
/// leading dimensions of 1 to match `x`'s rank).
pub fn linear<const D: usize>(x: Tensor<D>, w: Tensor<D>) -> Option<Tensor<D>> {
    let (d_in, d_out) = (w.dims()[D - 2], w.dims()[D - 1]);
    assert_eq!(x.dims()[D - 1], d_in, "linear: input has {} channels, the weight {d_in}", x.dims()[D - 1]);
    apply(
        [x, w],
        |[x, w], tracked| {
            let (xv, wv) = (values(x), values(w));
            let rows = xv.len() / d_in.max(1);
            let y = product(Mat::row_major(&xv, rows, d_in), Mat::row_major(&wv, d_in, d_out));
            let mut shape = x.layout().shape().clone();
            shape[D - 1] = d_out;
            let state = tracked.then(|| (contiguous(x, xv), contiguous(w, wv)));
            (flex_tensor(y, shape), state)
        },
        |(x, w): &(FlexTensor, FlexTensor), g, needs| {
            let (xv, wv) = (values(x), values(w));
            let (d_in, d_out) = (w.layout().shape()[D - 2], w.layout().shape()[D - 1]);
            let rows = g.len() / d_out.max(1);
            let g = Mat::row_major(g, rows, d_out);
            // The two products are independent: one per thread when there are two.
            let (dx, dw) = rayon::join(
                || needs[0].then(|| product(g, Mat::row_major(&wv, d_in, d_out).t())),
                || needs[1].then(|| product(Mat::row_major(&xv, rows, d_in).t(), g)),
            );
            [dx, dw]
        },
    )
}

/// `t` itself when its values are contiguous, else a contiguous tensor of `values` (its values
/// already copied out).
fn contiguous(t: &FlexTensor, values: std::borrow::Cow<'_, [f32]>) -> FlexTensor {
    match values {
        std::borrow::Cow::Borrowed(_) => t.clone(),
        std::borrow::Cow::Owned(v) => flex_tensor(v, t.layout().shape().clone()),
    }
}

/// What causal attention's backward pass reads: its inputs and the attention weights.
#[derive(Clone, Debug)]
pub struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    p: Arc<Vec<f32>>,
}

/// Causal attention over one segment from its first token, `softmax(q·kᵀ/√d)·v` with query `i`
/// seeing keys `0..=i`, for `q, k: [B, H, n, d]` and `v: [B, H, n, d_v]`, one head per task.
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Option<Tensor<4>> {
    let [b, h, n, d] = q.dims();
    let dv = v.dims()[3];
    assert_eq!(k.dims(), [b, h, n, d], "causal_attention: keys {:?} for queries {:?}", k.dims(), q.dims());
    assert_eq!(v.dims()[..3], [b, h, n], "causal_attention: values {:?} for queries {:?}", v.dims(), q.dims());
    let scale = 1.0 / (d as f32).sqrt();
    apply(
        [q, k, v],
        |[q, k, v], tracked| {
            let (qv, kv, vv) = (values(q), values(k), values(v));
            let mut p = vec![0f32; b * h * n * n];
            let mut o = vec![0f32; b * h * n * dv];
            p.par_chunks_mut(n * n).zip(o.par_chunks_mut(n * dv)).enumerate().for_each(|(i, (p, o))| {
                let (qh, kh, vh) = (&qv[i * n * d..][..n * d], &kv[i * n * d..][..n * d], &vv[i * n * dv..][..n * dv]);
                gemm_into(p.as_mut_ptr(), p.len(), false, Mat::row_major(qh, n, d), Mat::row_major(kh, n, d).t());
                for (r, row) in p.chunks_mut(n).enumerate() {
                    for x in &mut row[..=r] {
                        *x *= scale;
                    }
                    simd::vectorized(SoftmaxRow(row.split_at_mut(r + 1)));
                }
                gemm_into(o.as_mut_ptr(), o.len(), false, Mat::row_major(p, n, n), Mat::row_major(vh, n, dv));
            });
            let state = tracked.then(|| AttentionState {
                q: contiguous(q, qv),
                k: contiguous(k, kv),
                v: contiguous(v, vv),
                p: Arc::new(p),
            });
            (flex_tensor(o, [b, h, n, dv].into()), state)
        },
        |s: &AttentionState, g, _| {
            let [_, _, n, d] = s.q.layout().shape().dims();
            let dv = s.v.layout().shape()[3];
            let scale = 1.0 / (d as f32).sqrt();
            let (qv, kv, vv) = (values(&s.q), values(&s.k), values(&s.v));
            let (mut dq, mut dk, mut dvv) = (vec![0f32; qv.len()], vec![0f32; kv.len()], vec![0f32; vv.len()]);
            dq.par_chunks_mut(n * d).zip(dk.par_chunks_mut(n * d)).zip(dvv.par_chunks_mut(n * dv)).enumerate().for_each(|(i, ((dq, dk), dvh))| {
                let (qh, kh, vh) = (&qv[i * n * d..][..n * d], &kv[i * n * d..][..n * d], &vv[i * n * dv..][..n * dv]);
                let (ph, gh) = (&s.p[i * n * n..][..n * n], &g[i * n * dv..][..n * dv]);
                // dP = dO·vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale in place.
                let mut ds = vec![0f32; n * n];
                gemm_into(ds.as_mut_ptr(), ds.len(), false, Mat::row_major(gh, n, dv), Mat::row_major(vh, n, dv).t());
                for (r, (row, p)) in ds.chunks_mut(n).zip(ph.chunks(n)).enumerate() {
                    let dot: f32 = p[..=r].iter().zip(&row[..=r]).map(|(p, g)| p * g).sum();
                    for j in 0..=r {
                        row[j] = p[j] * (row[j] - dot) * scale;
                    }
                    row[r + 1..].fill(0.0);
                }
                let ds = Mat::row_major(&ds, n, n);
                gemm_into(dq.as_mut_ptr(), dq.len(), false, ds, Mat::row_major(kh, n, d));
                gemm_into(dk.as_mut_ptr(), dk.len(), false, ds.t(), Mat::row_major(qh, n, d));
                gemm_into(dvh.as_mut_ptr(), dvh.len(), false, Mat::row_major(ph, n, n).t(), Mat::row_major(gh, n, dv));
            });
            [Some(dq), Some(dk), Some(dvv)]
        },
    )
}

/// `silu(gate) ⊙ up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Option<Tensor<D>> {
    assert_eq!(gate.shape(), up.shape(), "swiglu: gate and up differ in shape");
    apply(
        [gate, up],
        |[a, b], tracked| {
            let (av, bv) = (values(a), values(b));
            let mut h = vec![0f32; av.len()];
            h.par_chunks_mut(CHUNK).zip(av.par_chunks(CHUNK).zip(bv.par_chunks(CHUNK))).for_each(|(h, (a, b))| {
                simd::vectorized(SwigluForward { h, a, b })
            });
            (flex_tensor(h, a.layout().shape().clone()), tracked.then(|| (a.clone(), b.clone())))
        },
        |(a, b): &(FlexTensor, FlexTensor), g, _| {
            let (av, bv) = (values(a), values(b));
            let mut da = vec![0f32; g.len()];
            let mut db = vec![0f32; g.len()];
            da.par_chunks_mut(CHUNK)
                .zip(db.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK).zip(av.par_chunks(CHUNK).zip(bv.par_chunks(CHUNK))))
                .for_each(|((da, db), (g, (a, b)))| simd::vectorized(SwigluBackward { da, db, g, a, b }));
            [Some(da), Some(db)]
        },
    )
}

struct SwigluForward<'a> {
    h: &'a mut [f32],
    a: &'a [f32],
    b: &'a [f32],
}

impl simd::Kernel for SwigluForward<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for i in 0..self.h.len() {
            self.h[i] = silu(self.a[i]).0 * self.b[i];
        }
    }
}

struct SwigluBackward<'a> {
    da: &'a mut [f32],
    db: &'a mut [f32],
    g: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
}

impl simd::Kernel for SwigluBackward<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for i in 0..self.da.len() {
            let ((value, derivative), g) = (silu(self.a[i]), self.g[i]);
            self.da[i] = g * self.b[i] * derivative;
            self.db[i] = g * value;
        }
    }
}

/// What RMSNorm's backward pass reads: its input, the weight, and each row's `1/rms`.
#[derive(Clone, Debug)]
pub struct NormState {
    x: FlexTensor,
    gamma: Arc<Vec<f32>>,
    inv_rms: Arc<Vec<f32>>,
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) ⊙ gamma`; `gamma` has the shape
/// `[1, …, 1, d]`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<D>, eps: f64) -> Option<Tensor<D>> {
    let d = x.dims()[D - 1];
    assert_eq!(gamma.shape().num_elements(), d, "rms_norm: gamma must hold one weight per channel");
    let eps = eps as f32;
    apply(
        [x, gamma],
        |[x, gamma], tracked| {
            let (xv, gv) = (values(x), values(gamma));
            let mut y = vec![0f32; xv.len()];
            let mut inv = vec![0f32; xv.len() / d];
            let rows = (CHUNK / d).max(1);
            y.par_chunks_mut(rows * d).zip(xv.par_chunks(rows * d)).zip(inv.par_chunks_mut(rows)).for_each(|((y, x), inv)| {
                for ((y, x), inv) in y.chunks_mut(d).zip(x.chunks(d)).zip(inv.iter_mut()) {
                    let rms = (x.iter().map(|v| v * v).sum::<f32>() / d as f32 + eps).sqrt();
                    *inv = 1.0 / rms;
                    for j in 0..d {
                        y[j] = x[j] / rms * gv[j];
                    }
                }
            });
            let state = tracked.then(|| NormState { x: x.clone(), gamma: Arc::new(gv.into_owned()), inv_rms: Arc::new(inv) });
            (flex_tensor(y, x.layout().shape().clone()), state)
        },
        |state: &NormState, g, needs| {
            let (xv, gv) = (values(&state.x), &state.gamma);
            let d = gv.len();
            let rows = (CHUNK / d).max(1);
            let mut dx = vec![0f32; g.len()];
            // Per chunk of rows: dx, and that chunk's share of dγ (summed in chunk order below).
            let partial: Vec<Vec<f32>> = dx
                .par_chunks_mut(rows * d)
                .zip(g.par_chunks(rows * d).zip(xv.par_chunks(rows * d)))
                .zip(state.inv_rms.par_chunks(rows))
                .map(|((dx, (g, x)), inv)| {
                    let mut dgamma = vec![0f32; if needs[1] { d } else { 0 }];
                    for (((dx, g), x), &r) in dx.chunks_mut(d).zip(g.chunks(d)).zip(x.chunks(d)).zip(inv) {
                        let dot: f32 = (0..d).map(|j| g[j] * gv[j] * x[j]).sum();
                        let c = r * r * r * dot / d as f32;
                        for j in 0..d {
                            dx[j] = r * g[j] * gv[j] - x[j] * c;
                        }
                        for j in 0..dgamma.len() {
                            dgamma[j] += g[j] * x[j] * r;
                        }
                    }
                    dgamma
                })
                .collect();
            let dgamma = needs[1].then(|| {
                let mut sum = vec![0f32; d];
                for p in &partial {
                    for j in 0..d {
                        sum[j] += p[j];
                    }
                }
                sum
            });
            [Some(dx), dgamma]
        },
    )
}

/// The rotation tables of [`rope`]'s positions: `cos` and `sin`, `[n, d]` each.
#[derive(Clone, Debug)]
pub struct RopeTables {
    /// cos(pos · θ_i), each frequency in both halves.
    pub cos: Arc<Vec<f32>>,
    /// sin(pos · θ_i), likewise.
    pub sin: Arc<Vec<f32>>,
    /// Channels per head.
    pub d: usize,
}

/// RoPE on `x: [B, H, n, d]` (half-split layout): `x ⊙ cos + rotate_half(x) ⊙ sin` with
/// `rotate_half([x1, x2]) = [−x2, x1]`; its gradient rotates back.
pub fn rope(x: Tensor<4>, tables: RopeTables) -> Option<Tensor<4>> {
    let [_, _, n, d] = x.dims();
    assert!(tables.cos.len() == n * d && tables.d == d, "rope: tables for {} values, x has {n}×{d} per head", tables.cos.len());
    apply(
        [x],
        |[x], tracked| {
            let xv = values(x);
            let mut y = vec![0f32; xv.len()];
            y.par_chunks_mut(n * d).zip(xv.par_chunks(n * d)).for_each(|(y, x)| rotate(y, x, &tables, d, false));
            (flex_tensor(y, x.layout().shape().clone()), tracked.then(|| tables.clone()))
        },
        |tables: &RopeTables, g, _| {
            let (n_d, d) = (tables.cos.len(), tables.d);
            let mut dx = vec![0f32; g.len()];
            dx.par_chunks_mut(n_d).zip(g.par_chunks(n_d)).for_each(|(dx, g)| rotate(dx, g, tables, d, true));
            [Some(dx)]
        },
    )
}

/// One head's `[n, d]` block: `y = R x` (forward) or `y = Rᵀ x` (`transpose`, the gradient).
fn rotate(y: &mut [f32], x: &[f32], t: &RopeTables, d: usize, transpose: bool) {
    let half = d / 2;
    for ((y, x), (cos, sin)) in y.chunks_mut(d).zip(x.chunks(d)).zip(t.cos.chunks(d).zip(t.sin.chunks(d))) {
        for j in 0..half {
            let (x1, x2) = (x[j], x[j + half]);
            if transpose {
                y[j] = x1 * cos[j] + x2 * sin[j + half];
                y[j + half] = x2 * cos[j + half] - x1 * sin[j];
            } else {
                y[j] = x1 * cos[j] + -x2 * sin[j];
                y[j + half] = x2 * cos[j + half] + x1 * sin[j + half];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, activation};

    fn vec(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Largest difference relative to the largest magnitude of `b`.
    fn rel(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
    }

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.5), device)
    }

    /// `ours` and `theirs` (the tensor-op formulation) of the same inputs, each on leaves of its
    /// own: equal values, and equal gradients of every input under a random weighting of the
    /// output.
    fn same<const N: usize>(
        name: &str,
        inputs: [Tensor<4>; N],
        ours: impl Fn([Tensor<4>; N]) -> Tensor<4>,
        theirs: impl Fn([Tensor<4>; N]) -> Tensor<4>,
        tolerance: f32,
    ) {
        let leaves = || inputs.clone().map(|x| x.detach().require_grad());
        let (xa, xb) = (leaves(), leaves());
        let (a, b) = (ours(xa.clone()), theirs(xb.clone()));
        let worst = rel(&vec(a.clone()), &vec(b.clone()));
        assert!(worst < tolerance, "{name}: values differ by {worst}");
        let w = Tensor::<4>::random(a.dims(), Distribution::Normal(0.0, 1.0), &a.device());
        let (ga, gb) = ((a * w.clone()).sum().backward(), (b * w).sum().backward());
        for (i, (xa, xb)) in xa.iter().zip(&xb).enumerate() {
            let (a, b) = (vec(xa.grad(&ga).unwrap()), vec(xb.grad(&gb).unwrap()));
            assert!(b.iter().any(|g| *g != 0.0), "{name}: input {i} gets no gradient");
            let worst = rel(&a, &b);
            assert!(worst < tolerance, "{name}: gradients of input {i} differ by {worst}");
        }
    }

    #[test]
    fn layers_equal_tensor_ops() {
        let device = Device::flex().autodiff();
        let (a, b) = (random([2, 3, 5, 16], &device), random([2, 3, 5, 16], &device));
        same("swiglu", [a.clone(), b], |[a, b]| swiglu(a, b).unwrap(), |[a, b]| activation::silu(a) * b, 1e-5);

        let eps = 1e-5;
        same(
            "rms_norm",
            [a.clone(), random([1, 1, 1, 16], &device)],
            |[x, g]| rms_norm(x, g, eps).unwrap(),
            |[x, g]| x.clone() / (x.square().mean_dim(3) + eps).sqrt() * g,
            1e-5,
        );

        same("linear", [a.clone(), random([1, 1, 16, 7], &device)], |[x, w]| linear(x, w).unwrap(), |[x, w]| x.matmul(w), 1e-5);

        // Queries transposed (not contiguous), as after splitting heads.
        let qkv = [random([2, 5, 3, 16], &device), random([2, 3, 5, 16], &device), random([2, 3, 5, 8], &device)];
        let arange = || Tensor::<1, burn::tensor::Int>::arange(0..5, &device);
        let mask = arange().reshape([1, 5]).greater(arange().reshape([5, 1])).reshape([1, 1, 5, 5]).expand([2, 3, 5, 5]);
        same(
            "causal_attention",
            qkv,
            |[q, k, v]| causal_attention(q.swap_dims(1, 2), k, v).unwrap(),
            |[q, k, v]| {
                let scores = q.swap_dims(1, 2).matmul(k.swap_dims(2, 3)).div_scalar(4.0);
                activation::softmax(scores.mask_fill(mask.clone(), f32::NEG_INFINITY), 3).matmul(v)
            },
            1e-5,
        );
    }

    #[test]
    fn rope_equals_tensor_ops() {
        let device = Device::flex().autodiff();
        let (n, d) = (6, 8);
        let angle = |p: usize, j: usize| p as f32 / 10f32.powf((j % (d / 2)) as f32 / (d / 2) as f32);
        let cos: Vec<f32> = (0..n * d).map(|i| angle(i / d + 3, i % d).cos()).collect();
        let sin: Vec<f32> = (0..n * d).map(|i| angle(i / d + 3, i % d).sin()).collect();
        let table = |v: &Vec<f32>| Tensor::<2>::from_data(burn::tensor::TensorData::new(v.clone(), [n, d]), &device).reshape([1, 1, n, d]);
        let tables = RopeTables { cos: Arc::new(cos.clone()), sin: Arc::new(sin.clone()), d };
        same(
            "rope",
            [random([2, 3, n, d], &device)],
            |[x]| rope(x, tables.clone()).unwrap(),
            |[x]| {
                let rotated = Tensor::cat(vec![x.clone().slice_dim(3, d / 2..d).neg(), x.clone().slice_dim(3, 0..d / 2)], 3);
                x * table(&cos) + rotated * table(&sin)
            },
            1e-6,
        );
    }

    /// Without autodiff (evaluation), the same values.
    #[test]
    fn layers_run_without_autodiff() {
        let device = Device::flex();
        let a = Tensor::<4>::random([1, 2, 4, 8], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([1, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        assert!(rel(&vec(linear(a.clone(), w.clone()).unwrap()), &vec(a.clone().matmul(w))) < 1e-6);
        let b = Tensor::<4>::random([1, 2, 4, 8], Distribution::Normal(0.0, 1.0), &device);
        assert!(rel(&vec(swiglu(a.clone(), b.clone()).unwrap()), &vec(activation::silu(a) * b)) < 1e-6);
    }
}
