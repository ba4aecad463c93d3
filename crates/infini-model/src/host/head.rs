//! The output head's matrix products on the host (Flex, f32), straight into buffers of our own.
//!
//! Through Flex each product allocates its output zero-filled, then copies it into a second,
//! more aligned allocation, and reading the result back (`into_data`) copies it a third time:
//! for the logits of a 512-token window over 32,000 words that is three passes over 65 MB
//! before and after a product that writes them anyway. Here [gemm] (the crate Flex calls) writes
//! the logits into a fresh buffer that is then handed on without a copy, the hidden states'
//! gradient likewise, and the weight's gradient is added into one step-long sum in the same
//! product (`acc += hᵀ·g`), so no `[d, vocab]` gradient is allocated per window either.
//!
//! [`HostHead`] holds one copy of the head's weight for as long as the weight does not change
//! (a training step, an evaluation). The arithmetic is gemm's, as through Flex.

use burn::tensor::{Device, TensorData};

use super::fused;
use super::gemm::{Mat, gemm_into, product};
use crate::model::InfiniLm;

/// The output head `W: [d_model, vocab]` of a model, copied out once for the host products.
pub struct HostHead {
    /// The weight's values, read back once (as `TensorData`, read in place: a `Vec` would copy
    /// them once more).
    data: TensorData,
    d: usize,
    vocab: usize,
    /// Whether `data` is the embedding `[vocab, d]` (tied head: `W = Eᵀ`) rather than `[d, vocab]`.
    transposed: bool,
}

impl HostHead {
    /// The head of `model` when its products can run here: tensors on Flex and f32 products
    /// (not a lower-precision `compute`). `None` otherwise: the tensor-op path serves.
    pub fn of(model: &InfiniLm, device: &Device) -> Option<Self> {
        if !fused(device) || model.compute().is_some() {
            return None;
        }
        let (weight, transposed) = match &model.lm_head {
            Some(head) => (head.weight.val(), false),
            None => (model.embedding.weight.val(), true),
        };
        let dims = weight.dims();
        let data = weight.into_data();
        data.as_slice::<f32>().ok()?;
        let (d, vocab) = if transposed { (dims[1], dims[0]) } else { (dims[0], dims[1]) };
        Some(Self { data, d, vocab, transposed })
    }

    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The model width.
    pub fn d_model(&self) -> usize {
        self.d
    }

    fn w(&self) -> Mat<'_> {
        let data = self.data.as_slice::<f32>().expect("checked f32 in `of`");
        if self.transposed {
            Mat::row_major(data, self.vocab, self.d).t()
        } else {
            Mat::row_major(data, self.d, self.vocab)
        }
    }

    /// Logits `[rows, vocab] = h·W` of hidden states `h: [rows, d]` (row-major).
    pub fn logits(&self, h: &[f32]) -> Vec<f32> {
        product(Mat::row_major(h, h.len() / self.d.max(1), self.d), self.w())
    }

    /// The hidden states' gradient `g·Wᵀ: [rows, d]` of a logits gradient `g: [rows, vocab]`.
    pub fn grad_hidden(&self, g: &[f32]) -> Vec<f32> {
        product(Mat::row_major(g, g.len() / self.vocab.max(1), self.vocab), self.w().t())
    }

    /// `sum += hᵀ·g`: the weight's gradient `[d, vocab]` (row-major) of the rows `h: [rows, d]`
    /// with logits gradient `g: [rows, vocab]`, added into `sum`.
    pub fn add_grad_weight(&self, sum: &mut [f32], h: &[f32], g: &[f32]) {
        let rows = h.len() / self.d.max(1);
        let (h, g) = (Mat::row_major(h, rows, self.d), Mat::row_major(g, rows, self.vocab));
        if rows > 0 {
            gemm_into(sum.as_mut_ptr(), sum.len(), true, h.t(), g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        (0..m * n).map(|i| (0..k).map(|p| a[i / n * k + p] as f64 * b[p * n + i % n] as f64).sum()).collect()
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((*x as f64 - y).abs() <= 1e-4 * (1.0 + y.abs()), "value {i}: {x} vs {y}");
        }
    }

    /// All three products against a naive triple loop, for a tied and an untied head, and
    /// the weight's gradient added to what the sum held.
    #[test]
    fn products_equal_a_naive_computation() {
        for tied in [false, true] {
            let mut config = ModelConfig::tiny(53);
            config.tie_embeddings = tied;
            let device = Device::flex();
            let model = config.init(&device);
            let head = HostHead::of(&model, &device).expect("f32 on Flex");
            let (d, v, rows) = (head.d_model(), head.vocab(), 7);
            let w = model.head_weight().into_data().try_to_vec::<f32>().unwrap();
            let h: Vec<f32> = (0..rows * d).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
            let g: Vec<f32> = (0..rows * v).map(|i| ((i * 11) % 19) as f32 / 5.0 - 1.8).collect();
            close(&head.logits(&h), &naive(&h, &w, rows, d, v));
            let wt: Vec<f32> = (0..v * d).map(|i| w[(i % d) * v + i / d]).collect();
            close(&head.grad_hidden(&g), &naive(&g, &wt, rows, v, d));
            let ht: Vec<f32> = (0..d * rows).map(|i| h[(i % rows) * d + i / rows]).collect();
            let mut sum = vec![0.5f32; d * v];
            head.add_grad_weight(&mut sum, &h, &g);
            let expected: Vec<f64> = naive(&ht, &g, d, rows, v).iter().map(|x| x + 0.5).collect();
            close(&sum, &expected);
        }
    }

    #[test]
    fn no_host_head_for_low_precision_products() {
        let device = Device::flex();
        let model = ModelConfig::tiny(53).init(&device).with_compute(Some(burn::tensor::DType::BF16));
        assert!(HostHead::of(&model, &device).is_none());
    }
}
