//! The per-segment step shared by training, validation and evaluation: a [`SegmentBatch`]
//! through the model with the memory, giving the masked next-token NLL of every position.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_data::SegmentBatch;
use infini_model::host::fused;
use infini_model::{InfiniLm, MemoryState};

/// Token ids `[B, N]` of a flat row-major buffer.
pub fn ids(values: &[u32], batch: usize, len: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = values.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [batch, len]), device)
}

/// The tensor-op loss over the vocabulary: `log softmax` of `logits: [T, V]` and each row's
/// `−log p(target)` for `targets: [T, 1]`, as `[T, 1]`.
fn log_probs(logits: Tensor<2>, targets: Tensor<2, Int>) -> (Tensor<2>, Tensor<2>) {
    let logp = log_softmax(logits, 1);
    let nll = logp.clone().gather(1, targets).neg();
    (logp, nll)
}

/// `-log p(target)` at every position of `logits: [B, N, V]`, times `mask: [B, N]`.
pub fn masked_nll(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
    let [b, n, v] = logits.dims();
    let (_, nll) = log_probs(logits.reshape([b * n, v]), targets.reshape([b * n, 1]));
    nll.reshape([b, n]) * mask
}

/// Runs one segment for every stream (emptying the memory of streams that start a document)
/// and returns the per-position masked NLL `[B, N]` and the updated memory. Without autodiff on
/// Flex the loss over the vocabulary runs fused on the host ([`infini_model::host::vocab_nll::nll`]).
pub fn segment_nll(model: &InfiniLm, segment: &SegmentBatch, memory: MemoryState, device: &Device) -> (Tensor<2>, MemoryState) {
    let (b, n) = (segment.batch, segment.segment_len);
    let inputs = ids(&segment.inputs, b, n, device);
    let mask = Tensor::<2>::from_data(TensorData::new(segment.mask.clone(), [b, n]), device);
    let (logits, memory) = model.forward(inputs, memory, &segment.reset);
    if fused(device) && !device.is_autodiff() {
        let vocab = logits.dims()[2];
        let mut data = logits.into_data().try_into_vec::<f32>().expect("logits are f32");
        let nll = infini_model::host::vocab_nll::nll(&mut data, vocab, &segment.targets);
        return (Tensor::<2>::from_data(TensorData::new(nll, [b, n]), device) * mask, memory);
    }
    let targets = ids(&segment.targets, b, n, device);
    (masked_nll(logits, targets, mask), memory)
}

/// The output head and loss of one training segment, with their gradient worked out directly
/// instead of through autodiff: `∂(scale·Σ mask·NLL)/∂logits = scale·mask·(softmax − onehot)`,
/// from which follow the gradients of the hidden states (`g·Wᵀ`) and of the head (`hᵀ·g`). The
/// `[tokens, vocab]` logits then live only for the duration of this call — autodiff would keep
/// them, their exponentials and their gradients until the backward pass, and take about twice
/// the passes over them.
pub struct HeadGrad {
    /// Σ mask·NLL of the segment (detached, not scaled).
    pub nll_sum: Tensor<1>,
    /// A scalar whose gradient with respect to the hidden states (the only tracked input) is
    /// `scale ·` that of the segment's summed NLL; its value means nothing.
    pub hidden_term: Tensor<1>,
    /// `scale · ∂(Σ mask·NLL)/∂W` for the `[d_model, vocab]` head ([`InfiniLm::head_weight`]).
    pub grad_weight: Tensor<2>,
}

/// See [`HeadGrad`]: `hidden: [B, N, d_model]` are the final hidden states of `segment`.
pub fn head_grad(model: &InfiniLm, hidden: Tensor<3>, segment: &SegmentBatch, scale: f64, device: &Device) -> HeadGrad {
    head_grad_with(model, hidden, segment, scale, device, fused(device))
}

/// [`head_grad`] with the loss over the vocabulary computed by the fused host code (`fused`,
/// Flex only) or by tensor ops (any backend).
pub fn head_grad_with(model: &InfiniLm, hidden: Tensor<3>, segment: &SegmentBatch, scale: f64, device: &Device, fused: bool) -> HeadGrad {
    use burn::tensor::IndexingUpdateOp;
    use infini_model::precision::matmul;
    let [b, n, d] = hidden.dims();
    let t = b * n;
    let compute = model.compute();
    let h = hidden.clone().detach().reshape([t, d]);
    let w = model.head_weight().detach();
    let logits = matmul(h.clone(), w.clone(), compute);
    let (nll_sum, grad_logits) = if fused {
        let vocab = w.dims()[1];
        let mut data = logits.into_data().try_into_vec::<f32>().expect("logits are f32");
        let weights: Vec<f32> = segment.mask.iter().map(|&m| m * scale as f32).collect();
        let nll = infini_model::host::vocab_nll::nll_and_grad(&mut data, vocab, &segment.targets, &weights);
        let sum: f64 = nll.iter().zip(&segment.mask).map(|(&l, &m)| l as f64 * m as f64).sum();
        (Tensor::<1>::from_data(TensorData::new(vec![sum as f32], [1]), device), Tensor::<2>::from_data(TensorData::new(data, [t, vocab]), device))
    } else {
        let targets = ids(&segment.targets, t, 1, device);
        let mask = Tensor::<2>::from_data(TensorData::new(segment.mask.clone(), [t, 1]), device);
        let (logp, nll) = log_probs(logits, targets.clone());
        let nll_sum = (nll * mask.clone()).sum();
        let weight = mask.mul_scalar(scale);
        (nll_sum, (logp.exp() * weight.clone()).scatter(1, targets, weight.neg(), IndexingUpdateOp::Add))
    };
    let grad_hidden = matmul(grad_logits.clone(), w.transpose(), compute);
    let grad_weight = matmul(h.transpose(), grad_logits, compute);
    HeadGrad { nll_sum, hidden_term: (hidden.reshape([t, d]) * grad_hidden).sum(), grad_weight }
}
