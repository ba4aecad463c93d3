//! The gradients of one training example: truncated backprop through the memory across its
//! segments, with the output head's and the embedding's gradients worked out by hand.

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, IndexingUpdateOp, Tensor, TensorData};
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, LayerMemory, MemoryState};

use crate::loss::{head_grad, ids};
use crate::phases::{Phase, time};

/// The gradients of one optimizer step, accumulated over its examples and windows: the blocks'
/// through autodiff, the two vocabulary-sized matrices by hand. The output head's gradient is
/// `Σ hᵀ·g` ([`head_grad`]); the embedding's is the gradient of the embedded inputs added into
/// the rows of their tokens. Autodiff would instead build, per segment, a dense `[vocab, d]`
/// gradient for each and add them up, several whole-matrix passes per window.
pub struct StepGrads {
    autodiff: GradientsAccumulator<InfiniLm>,
    head: Option<Tensor<2>>,
    embedding: Option<Tensor<2>>,
}

impl Default for StepGrads {
    fn default() -> Self {
        Self::new()
    }
}

fn add_into(slot: &mut Option<Tensor<2>>, value: Tensor<2>) {
    *slot = Some(match slot.take() {
        Some(sum) => sum + value,
        None => value,
    });
}

impl StepGrads {
    /// No gradient yet.
    pub fn new() -> Self {
        Self { autodiff: GradientsAccumulator::new(), head: None, embedding: None }
    }

    /// Adds the gradients of `x: [B, N, d]`, the embedded `tokens` (flat, B·N), to the embedding.
    fn add_embedding(&mut self, model: &InfiniLm, tokens: &[u32], x_grad: Tensor<3>, device: &Device) {
        let [b, n, d] = x_grad.dims();
        let rows = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(tokens.iter().map(|&t| t as i64).collect::<Vec<_>>(), [b * n]), device);
        let sum = match self.embedding.take() {
            Some(sum) => sum,
            None => Tensor::zeros(model.embedding.weight.dims(), device),
        };
        self.embedding = Some(sum.select_assign(0, rows, x_grad.reshape([b * n, d]), IndexingUpdateOp::Add));
    }

    /// All the gradients, ready for clipping and the optimizer.
    pub fn grads(mut self, model: &InfiniLm) -> GradientsParams {
        let mut grads = self.autodiff.grads();
        let mut embedding = self.embedding;
        if let Some(head) = self.head {
            match &model.lm_head {
                Some(lm_head) => grads.register(lm_head.weight.id, head),
                None => add_into(&mut embedding, head.transpose()),
            }
        }
        if let Some(embedding) = embedding {
            grads.register(model.embedding.weight.id, embedding);
        }
        grads
    }
}

/// Truncated backprop over one example: runs its segments in order, threading the memory, and
/// every `window` segments backpropagates `scale ×` the summed NLL of the window (through the
/// memory written inside the window), adds the gradients to `grads`, then detaches the memory.
/// Returns the example's scaled loss and its final (detached) memory.
///
/// The output head's loss and gradient are computed directly ([`head_grad`]) and enter autodiff
/// through a surrogate term whose gradient with respect to the hidden states is exactly that of
/// the loss; see [`StepGrads`] for the head's and the embedding's own gradients.
pub fn backprop_example(
    model: &InfiniLm,
    example: &[SegmentBatch],
    mut memory: MemoryState,
    window: usize,
    scale: f64,
    device: &Device,
    grads: &mut StepGrads,
) -> (f64, MemoryState) {
    let mut total = 0.0;
    for chunk in example.chunks(window.max(1)) {
        let mut terms: Vec<Tensor<1>> = Vec::with_capacity(chunk.len());
        let mut nll: Vec<Tensor<1>> = Vec::with_capacity(chunk.len());
        let mut embedded: Vec<Tensor<3>> = Vec::with_capacity(chunk.len());
        for segment in chunk {
            let (x, hidden) = time(Phase::Forward, || {
                let inputs = ids(&segment.inputs, segment.batch, segment.segment_len, device);
                let x = model.embed(inputs).detach().require_grad();
                let current = std::mem::replace(&mut memory, MemoryState { layers: Vec::new() });
                let (hidden, next) = model.forward_embedded(x.clone(), current, &segment.reset);
                memory = next;
                (x, hidden)
            });
            let head = time(Phase::Head, || head_grad(model, hidden, segment, scale, device));
            terms.push(head.hidden_term);
            nll.push(head.nll_sum);
            add_into(&mut grads.head, head.grad_weight);
            embedded.push(x);
        }
        total += Tensor::cat(nll, 0).sum().into_scalar::<f64>() * scale;
        time(Phase::Backward, || {
            let backward = Tensor::cat(terms, 0).sum().backward();
            for (x, segment) in embedded.iter().zip(chunk) {
                if let Some(g) = x.grad(&backward) {
                    grads.add_embedding(model, &segment.inputs, g, device);
                }
            }
            grads.autodiff.accumulate(model, GradientsParams::from_grads(backward, model));
        });
        memory = memory.detach();
    }
    (total, memory)
}

/// Frobenius norm of M per sequence (each stream's [heads, d_k, d_v] block), averaged over the
/// streams and the layers with a compressive memory.
pub(crate) fn mean_memory_norm(memory: &MemoryState) -> Option<f64> {
    let norms: Vec<f64> = memory
        .layers
        .iter()
        .filter_map(|l| l.compressive())
        .map(|l| {
            let b = l.m.dims()[0] as i32;
            l.m.clone().reshape([b, -1]).powi_scalar(2).sum_dim(1).sqrt().mean().into_scalar::<f64>()
        })
        .collect();
    (!norms.is_empty()).then(|| norms.iter().sum::<f64>() / norms.len() as f64)
}

/// Whether every value of a memory state is finite.
pub(crate) fn memory_is_finite(memory: &MemoryState) -> bool {
    let finite = |t: Tensor<1>| t.into_scalar::<f64>().is_finite();
    memory.layers.iter().all(|l| match l {
        LayerMemory::Compressive(m) => finite(m.m.clone().abs().sum()) && finite(m.z.clone().abs().sum()),
        LayerMemory::Xl(x) => finite(x.k.clone().abs().sum()) && finite(x.v.clone().abs().sum()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use infini_model::Memory;

    fn state(batch: usize, value: f32) -> MemoryState {
        let device = Device::flex();
        let m = Tensor::<4>::ones([batch, 2, 3, 4], &device) * value;
        let z = Tensor::<3>::ones([batch, 2, 3], &device);
        MemoryState { layers: vec![LayerMemory::Compressive(Memory { m, z })] }
    }

    #[test]
    fn memory_norm_is_per_sequence_whatever_the_batch() {
        // Each sequence's M is all 2s over 2·3·4 = 24 entries: Frobenius norm 2·√24.
        let want = 2.0 * 24f64.sqrt();
        for batch in [1, 4, 9] {
            let got = mean_memory_norm(&state(batch, 2.0)).unwrap();
            assert!((got - want).abs() < 1e-5 * want, "batch {batch}: {got} vs {want}");
        }
    }

    #[test]
    fn a_non_finite_memory_is_detected() {
        assert!(memory_is_finite(&state(2, 1.0)));
        assert!(!memory_is_finite(&state(2, f32::INFINITY)));
        assert!(!memory_is_finite(&state(2, f32::NAN)));
    }
}
