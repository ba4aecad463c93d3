//! The CPU fast paths, for tensors that live in this process's memory (Flex).
//!
//! Flex runs each element-wise op single-threaded, with an output of its own, and each matrix
//! product into a zero-filled buffer that it then copies; Burn's autodiff differentiates a layer
//! op by op, so that an RMSNorm is 7 passes forward and about 15 backward. Here each of the
//! blocks' layers (the projections, RMSNorm, RoPE, causal attention, SwiGLU's gating, σ) is one
//! node of the autodiff graph with a hand-written gradient ([`op`]): one threaded pass forward
//! and one backward, and products that gemm writes straight into buffers of ours ([`gemm`]).
//!
//! This module is the one seam between the math and the CPU fast paths: [`fused`] is the only
//! place that decides whether a fast path applies, and the model calls [`map`], [`linear`],
//! [`rms_norm`], [`swiglu`] and [`causal_attention`] (and `Rope::apply` calls
//! [`layers::rope`]) with the plain tensor-op formulation beside the fused one, so that a reader
//! of the model sees the math, and every backend other than Flex runs exactly that math; the
//! tests compare the two, values and gradients. The kernels of the training crate's fast paths
//! live here too ([`vocab_nll`]: the loss over the vocabulary and its gradient; [`adamw`]: the
//! optimizer's update; [`head`]: the output head's products), and it asks [`fused`].

use std::sync::Arc;

use burn::nn::{Linear, RmsNorm};
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::precision::Compute;

pub mod adamw;
pub mod gemm;
pub mod head;
pub mod layers;
pub mod op;
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

/// `layer(x)` for a linear layer without bias: the product on the host on Flex
/// ([`layers::linear`]), else Burn's `Linear`.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if layer.bias.is_none()
        && fused(&x.device())
        && let Some(y) = layers::linear(x.clone(), layer.weight.val().unsqueeze())
    {
        return y;
    }
    layer.forward(x)
}

/// `silu(gate) ⊙ up`: one host pass on Flex ([`layers::swiglu`]), else `tensor_ops(gate, up)`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>, tensor_ops: impl FnOnce(Tensor<D>, Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    if fused(&gate.device())
        && let Some(h) = layers::swiglu(gate.clone(), up.clone())
    {
        return h;
    }
    tensor_ops(gate, up)
}

/// `norm(x)`: one host pass on Flex ([`layers::rms_norm`]), else Burn's `RmsNorm`.
pub fn rms_norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>) -> Tensor<D> {
    if fused(&x.device())
        && let Some(y) = layers::rms_norm(x.clone(), norm.gamma.val().unsqueeze(), norm.epsilon)
    {
        return y;
    }
    norm.forward(x)
}

/// Causal attention `softmax(q·kᵀ/√d_k)·v` over one segment from its first token: on Flex in
/// f32 one host operation, one task per head ([`layers::causal_attention`]); otherwise (another
/// backend, or a lower-precision `compute`) `tensor_ops(q, k, v)`.
pub fn causal_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    compute: Compute,
    tensor_ops: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    if compute.is_none()
        && fused(&q.device())
        && let Some(out) = layers::causal_attention(q.clone(), k.clone(), v.clone())
    {
        return out;
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

/// `f` applied element-wise to `x` on the host, `f` returning `(f(x), f'(x))`: one threaded
/// pass that keeps `f'(x)` for the backward pass, which is `f'(x) ⊙ grad` ([`op::apply`]).
pub fn elementwise<const D: usize>(x: Tensor<D>, f: impl Fn(f32) -> (f32, f32) + Sync) -> Tensor<D> {
    op::apply(
        [x],
        |[x], tracked| {
            let values = op::values(x);
            let mut y = vec![0f32; values.len()];
            let mut dy = if tracked { vec![0f32; values.len()] } else { Vec::new() };
            if tracked {
                y.par_chunks_mut(CHUNK).zip(dy.par_chunks_mut(CHUNK)).zip(values.par_chunks(CHUNK)).for_each(|((y, dy), x)| {
                    simd::vectorized(MapChunk { y, dy: Some(dy), x, f: &f })
                });
            } else {
                y.par_chunks_mut(CHUNK).zip(values.par_chunks(CHUNK)).for_each(|(y, x)| simd::vectorized(MapChunk { y, dy: None, x, f: &f }));
            }
            (op::flex_tensor(y, x.layout().shape().clone()), tracked.then(|| Arc::new(dy)))
        },
        |dy: &Arc<Vec<f32>>, g, _| [Some(hadamard(g, dy))],
    )
    .expect("elementwise: an f32 tensor on Flex")
}

/// Element-wise chunks of the threaded passes.
const CHUNK: usize = 1 << 14;

/// `a ⊙ b` (element-wise), threaded.
pub fn hadamard(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len());
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        for i in 0..o.len() {
            o[i] = a[i] * b[i];
        }
    });
    out
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

/// One row of causal attention's softmax: the softmax of the positions seen, zeros after them.
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
}
