//! The per-segment step shared by training, validation and evaluation: a [`SegmentBatch`]
//! through the model with the memory, giving the masked next-token NLL of every position.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryState};

/// Token ids `[B, N]` of a flat row-major buffer.
pub fn ids(values: &[u32], batch: usize, len: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = values.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [batch, len]), device)
}

/// `-log p(target)` at every position of `logits: [B, N, V]`, times `mask: [B, N]`.
pub fn masked_nll(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
    let [b, n, _] = logits.dims();
    let logp = log_softmax(logits, 2).gather(2, targets.reshape([b, n, 1])).reshape([b, n]);
    logp.neg() * mask
}

/// Runs one segment for every stream (emptying the memory of streams that start a document)
/// and returns the per-position masked NLL `[B, N]` and the updated memory.
pub fn segment_nll(model: &InfiniLm, segment: &SegmentBatch, memory: MemoryState, device: &Device) -> (Tensor<2>, MemoryState) {
    let (b, n) = (segment.batch, segment.segment_len);
    let inputs = ids(&segment.inputs, b, n, device);
    let targets = ids(&segment.targets, b, n, device);
    let mask = Tensor::<2>::from_data(TensorData::new(segment.mask.clone(), [b, n]), device);
    let (logits, memory) = model.forward(inputs, memory, &segment.reset);
    (masked_nll(logits, targets, mask), memory)
}
