//! Fused element-wise functions for tensors that live in this process's memory (Flex).
//!
//! Flex runs each element-wise op single-threaded and through libm's `expf`; an activation
//! such as SiLU becomes several passes forward and more backward. Here the value `f(x)` and the
//! derivative `f'(x)` come from one threaded pass, and autodiff sees
//! `y = f(x)⌀ + (x − x⌀) · f'(x)⌀` (⌀ = detached): its value is `f(x)` exactly (the bracket is
//! zero) and its gradient is `f'(x) · grad` — the same as differentiating `f`, at the price of
//! three cheap ops. Other backends use ordinary tensor ops.
//!
//! This module is the one seam between the math and the CPU fast paths: [`fused`] is the only
//! place that decides whether a fast path applies, and the model calls [`map`] and
//! [`causal_attention`] with the plain tensor-op formulation beside the fused one, so that a
//! reader of the model sees the math, and every backend other than Flex runs exactly that math.
//! The kernels of the training crate's fast paths live here too ([`vocab_nll`]: the loss over
//! the vocabulary and its gradient; [`adamw`]: the optimizer's update), and it asks [`fused`].

use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::precision::Compute;

pub mod adamw;
pub mod head;
pub mod simd;
pub mod vocab_nll;

/// Whether the fused host paths serve tensors of `device`: those that live in this process's
/// memory (Flex). Decided here only. `INFINI_HOST_PATHS=0` turns them off, so that Flex runs the
/// tensor-op paths that GPU backends take (to test those paths on any machine).
pub fn fused(device: &Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("INFINI_HOST_PATHS").map_or(true, |v| v.trim() != "0"))
        && matches!(device.clone().without_autodiff().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// `f` element-wise: one fused threaded pass for f32 tensors on Flex ([`elementwise`]), else
/// `tensor_ops(x)`, the same function written with tensor operations.
pub fn map<const D: usize>(x: Tensor<D>, f: impl Fn(f32) -> (f32, f32) + Sync, tensor_ops: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    if fused(&x.device()) && x.dtype() == DType::F32 { elementwise(x, f) } else { tensor_ops(x) }
}

/// Causal attention `softmax(q·kᵀ/√d_k)·v` over one segment from its first token: on Flex in
/// f32 the scores' softmax is one fused pass per row ([`causal_softmax`]); otherwise (another
/// backend, or a lower-precision `compute`) `tensor_ops(q, k, v)`.
pub fn causal_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    compute: Compute,
    tensor_ops: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    if compute.is_none() && fused(&q.device()) {
        let scale = 1.0 / (q.dims()[3] as f64).sqrt();
        let scores = q.mul_scalar(scale).matmul(k.transpose());
        return causal_softmax(scores).matmul(v);
    }
    tensor_ops(q, k, v)
}

/// `e^x` for f32 (relative error < 3e-7 on [-87, 88.37]; tiny below; above, clamped to
/// e^88.37 ≈ 2.4e38, finite), written so that loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const SHIFTER: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    // 88.37 · log2(e) rounds to 127, the largest exponent of a finite f32 (88.72 gave 2^128 = inf).
    let x = x.clamp(-87.33, 88.37);
    let k = x * LOG2E + SHIFTER;
    let n = k - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series to r^7: |r| ≤ ln2/2, truncation error < 6e-9 relative.
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let bits = (k.to_bits() as i32 - SHIFTER.to_bits() as i32 + 127) << 23;
    p * f32::from_bits(bits as u32)
}

/// Accumulator lanes of the row loops: one AVX-512 vector (two AVX2, four SSE), the same
/// summation order on every CPU.
const LANES: usize = 16;

/// The largest value of `row` (in [`LANES`] lanes, so that it vectorises).
#[inline(always)]
pub fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    rest.iter().chain(lanes.iter()).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// Replaces `row` by `exp(row − max)` and returns the sum.
#[inline(always)]
pub fn exp_shifted_sum(row: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            c[i] = exp(c[i] - max);
            lanes[i] += c[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum
}

/// `f` applied element-wise to `x` on the host, `f` returning `(f(x), f'(x))`; see the module
/// documentation for how the gradient flows.
pub fn elementwise<const D: usize>(x: Tensor<D>, f: impl Fn(f32) -> (f32, f32) + Sync) -> Tensor<D> {
    const CHUNK: usize = 1 << 14;
    let device = x.device();
    let shape = x.shape();
    let tracked = x.is_tracked();
    // Read in place (`as_slice`): turning the data into a Vec would copy it once more, its
    // alignment being Flex's 16 bytes, not f32's 4.
    let data = x.clone().detach().into_data();
    let values = data.as_slice::<f32>().expect("f32 tensor");
    let mut y = vec![0f32; values.len()];
    let mut dy = if tracked { vec![0f32; values.len()] } else { Vec::new() };
    if tracked {
        y.par_chunks_mut(CHUNK).zip(dy.par_chunks_mut(CHUNK)).zip(values.par_chunks(CHUNK)).for_each(|((y, dy), x)| {
            simd::vectorized(MapChunk { y, dy: Some(dy), x, f: &f })
        });
    } else {
        y.par_chunks_mut(CHUNK).zip(values.par_chunks(CHUNK)).for_each(|(y, x)| simd::vectorized(MapChunk { y, dy: None, x, f: &f }));
    }
    let y = Tensor::<D>::from_data(TensorData::new(y, shape.clone()), &device);
    if !tracked {
        return y;
    }
    let dy = Tensor::<D>::from_data(TensorData::new(dy, shape), &device);
    y + (x.clone() - x.detach()) * dy
}

/// Causal softmax over the last dimension of `scores: [B, H, T, T]` (row `i` sees columns
/// `0..=i`; the others get probability 0), one fused threaded pass per row. Autodiff sees
/// `P⌀ + P⌀ ⊙ (D − rowsum(P⌀ ⊙ D))` with `D = scores − scores⌀ = 0`: the value is `P` and
/// the gradient `P ⊙ (G − rowsum(P ⊙ G))`, softmax's own.
pub fn causal_softmax(scores: Tensor<4>) -> Tensor<4> {
    let dims = scores.dims();
    let t = dims[3];
    assert_eq!(dims[2], t, "causal_softmax needs square scores, got {dims:?}");
    let device = scores.device();
    let tracked = scores.is_tracked();
    // In place in the data read back, which then becomes the tensor (no further copy).
    let mut p = scores.clone().detach().into_data();
    let rows = p.as_mut_slice::<f32>().expect("f32 tensor");
    rows.par_chunks_mut(t).enumerate().for_each(|(r, row)| simd::vectorized(SoftmaxRow(row.split_at_mut(r % t + 1))));
    let p = Tensor::<4>::from_data(p, &device);
    if !tracked {
        return p;
    }
    let pd = p.clone() * (scores.clone() - scores.detach());
    let rows = pd.clone().sum_dim(3);
    p.clone() + pd - p * rows
}

/// One chunk of [`elementwise`]: the values into `y`, and the derivatives into `dy` if given.
struct MapChunk<'a, F> {
    y: &'a mut [f32],
    dy: Option<&'a mut [f32]>,
    x: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32) -> (f32, f32)> simd::Kernel for MapChunk<'_, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (y, x, f) = (self.y, self.x, self.f);
        match self.dy {
            Some(dy) => {
                for i in 0..x.len() {
                    (y[i], dy[i]) = f(x[i]);
                }
            }
            None => {
                for i in 0..x.len() {
                    y[i] = f(x[i]).0;
                }
            }
        }
    }
}

/// One row of [`causal_softmax`]: the softmax of the positions seen, zeros after them.
struct SoftmaxRow<'a>((&'a mut [f32], &'a mut [f32]));

impl simd::Kernel for SoftmaxRow<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (seen, hidden) = self.0;
        let max = row_max(seen);
        let inv = 1.0 / exp_shifted_sum(seen, max);
        for v in seen.iter_mut() {
            *v *= inv;
        }
        hidden.fill(0.0);
    }
}

/// SiLU `x · sigmoid(x)` and its derivative `s · (1 + x · (1 − s))`.
#[inline(always)]
pub fn silu(x: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + exp(-x));
    (x * s, s * (1.0 + x * (1.0 - s)))
}

/// σ(x) = ELU(x) + 1 and its derivative.
#[inline(always)]
pub fn elu_plus_one(x: f32) -> (f32, f32) {
    if x > 0.0 {
        (x + 1.0, 1.0)
    } else {
        let e = exp(x);
        (e, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.37 {
            let (ours, std) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - std) / std).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp(-200.0) < 1e-37 && exp(f32::NEG_INFINITY) < 1e-37);
        // Above the range: clamped, finite and not decreasing, up to +inf.
        let mut last = exp(88.0);
        for x in [88.37f32, 88.38, 88.5, 88.72, 88.73, 89.0, 100.0, 1e30, f32::INFINITY] {
            let e = exp(x);
            assert!(e.is_finite() && e >= last, "exp({x}) = {e}");
            last = e;
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for f in [silu, elu_plus_one] {
            for i in -60..=60 {
                let x = i as f64 / 7.0;
                let h = 1e-3;
                let numeric = (f((x + h) as f32).0 as f64 - f((x - h) as f32).0 as f64) / (2.0 * h);
                let (_, analytic) = f(x as f32);
                assert!((numeric - analytic as f64).abs() < 2e-3, "x = {x}: {numeric} vs {analytic}");
            }
        }
    }
}

#[cfg(test)]
mod tensor_tests {
    use super::*;
    use burn::tensor::{Distribution, activation};

    /// Values and gradients equal Burn's own ops (autodiff on Flex).
    #[test]
    fn elementwise_equals_tensor_ops() {
        let device = Device::flex().autodiff();
        assert!(fused(&device));
        let x = Tensor::<2>::random([64, 300], Distribution::Normal(0.0, 4.0), &device).require_grad();
        let w = Tensor::<2>::random([64, 300], Distribution::Default, &device);
        for (name, ours, theirs) in [
            ("silu", elementwise(x.clone(), silu), activation::silu(x.clone())),
            ("sigma", elementwise(x.clone(), elu_plus_one), x.clone().clamp_min(0.0) + x.clone().clamp_max(0.0).exp()),
        ] {
            let (a, b) = (ours.clone().into_data().try_to_vec::<f32>().unwrap(), theirs.clone().into_data().try_to_vec::<f32>().unwrap());
            let worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs() / q.abs().max(1.0)).fold(0f32, f32::max);
            assert!(worst < 1e-6, "{name}: values differ by {worst}");
            let ga = x.grad(&(ours * w.clone()).sum().backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();
            let gb = x.grad(&(theirs * w.clone()).sum().backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();
            let worst = ga.iter().zip(&gb).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{name}: gradients differ by {worst}");
        }
    }

    /// Causal softmax: values and gradients equal masked softmax by tensor ops.
    #[test]
    fn causal_softmax_equals_tensor_ops() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 9, 9], Distribution::Normal(0.0, 3.0), &device).require_grad();
        let w = Tensor::<4>::random([2, 3, 9, 9], Distribution::Default, &device);
        let mask = Tensor::<1, burn::tensor::Int>::arange(0..9, &device).reshape([1, 9]).greater(Tensor::<1, burn::tensor::Int>::arange(0..9, &device).reshape([9, 1]));
        let theirs = activation::softmax(x.clone().mask_fill(mask.reshape([1, 1, 9, 9]).expand([2, 3, 9, 9]), f32::NEG_INFINITY), 3);
        let ours = causal_softmax(x.clone());
        let (a, b) = (ours.clone().into_data().try_to_vec::<f32>().unwrap(), theirs.clone().into_data().try_to_vec::<f32>().unwrap());
        let worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "values differ by {worst}");
        let ga = x.grad(&(ours * w.clone()).sum().backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let gb = x.grad(&(theirs * w).sum().backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let worst = ga.iter().zip(&gb).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "gradients differ by {worst}");
    }
}
