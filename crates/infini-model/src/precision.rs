//! Mixed precision: weights, the residual stream, norms, softmax statistics and the compressive
//! memory stay f32; with a low-precision compute type (bf16) the matrix products — projections,
//! FFN, local attention and the output head — run in it, and their results return as f32.

use burn::nn::Linear;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Tensor};

/// The type matrix products run in: `None` = f32 throughout.
pub type Compute = Option<DType>;

/// `layer(x)`, computed in `compute` when given.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>, compute: Compute) -> Tensor<D> {
    match compute {
        None => crate::host::linear(layer, x),
        Some(dtype) => burn::tensor::module::linear(
            x.cast(dtype),
            layer.weight.val().cast(dtype),
            layer.bias.as_ref().map(|b| b.val().cast(dtype)),
        )
        .cast(DType::F32),
    }
}

/// Scaled dot-product attention, computed in `compute` when given.
pub fn scaled_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
    options: AttentionModuleOptions,
    compute: Compute,
) -> Tensor<4> {
    match compute {
        None => attention(q, k, v, mask, None, options),
        Some(dtype) => attention(q.cast(dtype), k.cast(dtype), v.cast(dtype), mask, None, options).cast(DType::F32),
    }
}

/// `a · b`, computed in `compute` when given.
pub fn matmul(a: Tensor<2>, b: Tensor<2>, compute: Compute) -> Tensor<2> {
    match compute {
        None => a.matmul(b),
        Some(dtype) => a.cast(dtype).matmul(b.cast(dtype)).cast(DType::F32),
    }
}
