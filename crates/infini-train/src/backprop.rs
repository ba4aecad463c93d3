//! The gradients of one training example: truncated backprop through the memory across its
//! segments, with the output head's and the embedding's gradients worked out by hand.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, IndexingUpdateOp, Tensor, TensorData};
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, LayerMemory, Memory, MemoryState};

use crate::loss::{HeadGradSum, head_grad, ids};
use crate::phases::{Phase, time};

/// The gradients of one optimizer step, accumulated over its examples and windows: the blocks'
/// through autodiff, the two vocabulary-sized matrices by hand. The output head's gradient is
/// `Σ hᵀ·g` ([`head_grad`]); the embedding's is the gradient of the embedded inputs added into
/// the rows of their tokens. Autodiff would instead build, per segment, a dense `[vocab, d]`
/// gradient for each and add them up, several whole-matrix passes per window.
pub struct StepGrads {
    autodiff: GradientsAccumulator<InfiniLm>,
    head: Option<HeadGradSum>,
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

    /// The sum of the output head's gradients (made at the first segment: it copies the head's
    /// weight for the host products, which stays valid for the whole step).
    fn head(&mut self, model: &InfiniLm, device: &Device) -> &mut HeadGradSum {
        self.head.get_or_insert_with(|| HeadGradSum::new(model, device))
    }

    /// All the gradients, ready for clipping and the optimizer.
    pub fn grads(mut self, model: &InfiniLm) -> GradientsParams {
        let mut grads = self.autodiff.grads();
        let mut embedding = self.embedding;
        let device = model.embedding.weight.val().device();
        if let Some(head) = self.head.and_then(|sum| sum.into_tensor(&device)) {
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

/// How the gradient of a backprop window is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Segments per window (the memory is detached between windows).
    pub segments: usize,
    /// Segment-level activation checkpointing: keep only each segment's incoming memory during
    /// the forward pass, and recompute one segment at a time in the backward pass (see
    /// [`backprop_window_recomputed`]). Same gradients, activations of one segment instead of
    /// the whole window, one extra forward pass of the blocks.
    pub recompute: bool,
    /// Memory dilution (`train.write_repeat_max`): each segment's memory write counted a random
    /// number of times. `None`: every write once, as in the paper.
    pub repeat: Option<WriteRepeat>,
}

impl Window {
    /// The window for example `e` of a step whose seed is `seed` (only the write weights depend on it).
    pub fn for_example(mut self, seed: u64, e: usize) -> Self {
        if let Some(r) = &mut self.repeat {
            r.seed = seed ^ (e as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03);
        }
        self
    }

    /// The window for the streams from `first` on of the example's batch (a data-parallel
    /// share), so that the shares draw the weights the whole batch would.
    pub fn for_streams(mut self, first: usize) -> Self {
        if let Some(r) = &mut self.repeat {
            r.first_stream = first;
        }
        self
    }
}

/// Memory dilution: the write of segment `s` into stream `b` counts `w` times, `w` drawn
/// log-uniformly from `[1, max]` by a fixed hash of (seed, s, b), so a resumed run and a
/// data-parallel one draw the same. Under the linear rule a write counted `w` times is the
/// memory that `w` repetitions of the segment would leave (for keys and values that do not
/// depend on the memory), so documents of `L` tokens train the read on memories as diluted as
/// longer ones would give, while every step still costs `L` tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WriteRepeat {
    /// Largest weight (> 1).
    pub max: f64,
    /// Seed of the draws ([`Window::for_example`]).
    pub seed: u64,
    /// Index of the batch's first stream ([`Window::for_streams`]).
    pub first_stream: usize,
}

impl WriteRepeat {
    /// The weights of segment `segment` for `batch` streams, each in `[1, max]`.
    pub fn weights(&self, segment: usize, batch: usize) -> Vec<f32> {
        (0..batch)
            .map(|b| {
                let mut state = self.seed ^ (segment as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((self.first_stream + b) as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let u = (infini_data::stream::splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                self.max.powf(u) as f32
            })
            .collect()
    }
}

/// Truncated backprop over one example: runs its segments in order, threading the memory, and
/// every `window.segments` segments backpropagates `scale ×` the summed NLL of the window
/// (through the memory written inside the window), adds the gradients to `grads`, then detaches
/// the memory. Returns the example's scaled loss (a scalar tensor, left on the device: the
/// caller reads it once per step) and its final (detached) memory.
///
/// The output head's loss and gradient are computed directly ([`head_grad`]) and enter autodiff
/// through a surrogate term whose gradient with respect to the hidden states is exactly that of
/// the loss; see [`StepGrads`] for the head's and the embedding's own gradients.
pub fn backprop_example(
    model: &InfiniLm,
    example: &[SegmentBatch],
    mut memory: MemoryState,
    window: Window,
    scale: f64,
    device: &Device,
    grads: &mut StepGrads,
) -> (Tensor<1>, MemoryState) {
    let mut losses = Vec::new();
    let per = window.segments.max(1);
    for (c, chunk) in example.chunks(per).enumerate() {
        // The write weights of the chunk's segments (None: every write once).
        let weights = |s: usize| window.repeat.map(|r| r.weights(c * per + s, chunk[s].batch));
        let (loss, next) = if window.recompute {
            backprop_window_recomputed(model, chunk, memory, &weights, scale, device, grads)
        } else {
            backprop_window(model, chunk, memory, &weights, scale, device, grads)
        };
        losses.push(loss);
        memory = next.detach();
    }
    (Tensor::cat(losses, 0).sum(), memory)
}

/// The write weights of a window's segment `s` ([`WriteRepeat`]), or `None`.
type Weights<'a> = dyn Fn(usize) -> Option<Vec<f32>> + 'a;

/// One segment forward from the embedded inputs `x`, its memory write counted `weights` times.
fn segment_forward(model: &InfiniLm, segment: &SegmentBatch, x: Tensor<3>, memory: MemoryState, weights: Option<Vec<f32>>) -> (Tensor<3>, MemoryState) {
    time(Phase::Forward, || match weights {
        Some(w) if !memory.layers.is_empty() => {
            let before = memory.clone().reset(&segment.reset);
            let (hidden, after) = model.forward_embedded(x, memory, &segment.reset);
            (hidden, after.reweight_write(&before, &w))
        }
        _ => model.forward_embedded(x, memory, &segment.reset),
    })
}

fn embedded_leaf(model: &InfiniLm, segment: &SegmentBatch, device: &Device) -> Tensor<3> {
    let inputs = ids(&segment.inputs, segment.batch, segment.segment_len, device);
    model.embed(inputs).detach().require_grad()
}

/// Largest logits (f32 bytes) of one head computation over a group of segments.
pub const HEAD_GROUP_BYTES: usize = 128 << 20;

/// Segments whose head runs at once: as many of the window's `window` segments (of `tokens`
/// tokens each, all streams) as keep the `[rows, vocab]` logits within [`HEAD_GROUP_BYTES`].
pub fn head_group(tokens: usize, vocab: usize, window: usize) -> usize {
    (HEAD_GROUP_BYTES / (tokens * vocab * 4).max(1)).clamp(1, window.max(1))
}

/// The targets and mask of consecutive segments as one `[B, k·N]` batch (row-major per stream,
/// the layout of their hidden states concatenated along time); inputs and resets are not needed.
fn merge_segments(segments: &[SegmentBatch]) -> SegmentBatch {
    let (b, n) = (segments[0].batch, segments[0].segment_len);
    if segments.len() == 1 {
        return segments[0].clone();
    }
    let mut merged = SegmentBatch {
        batch: b,
        segment_len: n * segments.len(),
        inputs: Vec::new(),
        targets: Vec::with_capacity(b * n * segments.len()),
        mask: Vec::with_capacity(b * n * segments.len()),
        reset: vec![false; b],
        docs: vec![None; b],
    };
    for stream in 0..b {
        for s in segments {
            merged.targets.extend_from_slice(&s.targets[stream * n..(stream + 1) * n]);
            merged.mask.extend_from_slice(&s.mask[stream * n..(stream + 1) * n]);
        }
    }
    merged
}

/// One window, one graph: all its segments forward, then one backward pass.
fn backprop_window(
    model: &InfiniLm,
    chunk: &[SegmentBatch],
    mut memory: MemoryState,
    weights: &Weights,
    scale: f64,
    device: &Device,
    grads: &mut StepGrads,
) -> (Tensor<1>, MemoryState) {
    let mut terms: Vec<Tensor<1>> = Vec::with_capacity(chunk.len());
    let mut nll: Vec<Tensor<1>> = Vec::with_capacity(chunk.len());
    let mut embedded: Vec<Tensor<3>> = Vec::with_capacity(chunk.len());
    let mut hiddens: Vec<Tensor<3>> = Vec::with_capacity(chunk.len());
    for (s, segment) in chunk.iter().enumerate() {
        let x = embedded_leaf(model, segment, device);
        let (hidden, next) = segment_forward(model, segment, x.clone(), memory, weights(s));
        memory = next;
        hiddens.push(hidden);
        embedded.push(x);
    }
    // The head over several segments at once: its three matrix products then have more rows
    // (faster per token), while the logits of a group stay within HEAD_GROUP_BYTES.
    let group = head_group(chunk[0].batch * chunk[0].segment_len, model.head_weight().dims()[1], chunk.len());
    let mut hiddens = hiddens.into_iter();
    for segments in chunk.chunks(group) {
        let hidden = Tensor::cat(hiddens.by_ref().take(segments.len()).collect(), 1);
        let merged = merge_segments(segments);
        let head = time(Phase::Head, || head_grad(model, hidden, &merged, scale, device, grads.head(model, device)));
        terms.push(head.hidden_term);
        nll.push(head.nll_sum);
    }
    let total = Tensor::cat(nll, 0).sum().mul_scalar(scale);
    time(Phase::Backward, || {
        let backward = Tensor::cat(terms, 0).sum().backward();
        for (x, segment) in embedded.iter().zip(chunk) {
            if let Some(g) = x.grad(&backward) {
                grads.add_embedding(model, &segment.inputs, g, device);
            }
        }
        grads.autodiff.accumulate(model, GradientsParams::from_grads(backward, model));
    });
    (total, memory)
}

/// One window with segment-level checkpointing. Forward: each segment runs and only its
/// outgoing memory is kept (detached; the segment's graph is dropped with its outputs).
/// Backward, last segment first: the segment runs again from its saved incoming memory, made a
/// leaf, and autodiff differentiates `scale·NLL_s + Σ_layers ⟨M_s, G_M⟩ + ⟨z_s, G_z⟩`, where
/// `G` is the gradient that the later segments sent back into this segment's outgoing memory.
/// Its gradients are those of the window's loss with respect to the weights and to the
/// incoming memory — which becomes the `G` of the segment before. Memory kinds without a
/// gradient path (the Transformer-XL cache is stored detached) contribute no term.
fn backprop_window_recomputed(
    model: &InfiniLm,
    chunk: &[SegmentBatch],
    memory: MemoryState,
    weights: &Weights,
    scale: f64,
    device: &Device,
    grads: &mut StepGrads,
) -> (Tensor<1>, MemoryState) {
    // The forward pass without autodiff (a graph built on the autodiff device would be kept
    // until the next backward pass, which is what this saves).
    let plain = model.valid();
    let plain_device = device.clone().without_autodiff();
    let mut incoming = vec![memory.map_tensors(Tensor::without_autodiff, Tensor::without_autodiff)];
    for (s, segment) in chunk.iter().enumerate() {
        let x = plain.embed(ids(&segment.inputs, segment.batch, segment.segment_len, &plain_device));
        let (_, next) = segment_forward(&plain, segment, x, incoming.last().expect("one memory per segment").clone(), weights(s));
        incoming.push(next);
    }
    let to_autodiff = |m: MemoryState| m.map_tensors(Tensor::autodiff, Tensor::autodiff);
    let last = to_autodiff(incoming.pop().expect("the window's final memory"));
    let mut nll = Vec::with_capacity(chunk.len());
    // Per layer, ∂loss/∂(M, z) of the memory leaving the current segment (None: no later segment).
    let mut later: Option<Vec<Option<(Tensor<4>, Tensor<3>)>>> = None;
    for (s, segment) in chunk.iter().enumerate().rev() {
        // The first segment's incoming memory is detached from the previous window anyway.
        let track = s > 0;
        let start = to_autodiff(incoming.pop().expect("one memory per segment"));
        let start = MemoryState {
            layers: start
                .layers
                .into_iter()
                .map(|l| match l {
                    LayerMemory::Compressive(m) if track => {
                        LayerMemory::Compressive(Memory { m: m.m.require_grad(), z: m.z.require_grad() })
                    }
                    other => other,
                })
                .collect(),
        };
        let leaves: Vec<Option<(Tensor<4>, Tensor<3>)>> =
            start.layers.iter().map(|l| l.compressive().filter(|_| track).map(|m| (m.m.clone(), m.z.clone()))).collect();
        let x = embedded_leaf(model, segment, device);
        let (hidden, out) = segment_forward(model, segment, x.clone(), start, weights(s));
        let head = time(Phase::Head, || head_grad(model, hidden, segment, scale, device, grads.head(model, device)));
        nll.push(head.nll_sum);
        let mut term = head.hidden_term;
        if let Some(later) = &later {
            for (layer, g) in out.layers.iter().zip(later) {
                if let (Some(m), Some((gm, gz))) = (layer.compressive(), g) {
                    term = term + (m.m.clone() * gm.clone()).sum() + (m.z.clone() * gz.clone()).sum();
                }
            }
        }
        time(Phase::Backward, || {
            let backward = term.backward();
            if let Some(g) = x.grad(&backward) {
                grads.add_embedding(model, &segment.inputs, g, device);
            }
            later = Some(
                leaves
                    .iter()
                    .map(|leaf| {
                        // Gradients stay on the device; without autodiff they enter the next
                        // segment's term as constants.
                        leaf.as_ref().map(|(m, z)| {
                            let gm = m.grad(&backward).unwrap_or_else(|| m.zeros_like().without_autodiff());
                            let gz = z.grad(&backward).unwrap_or_else(|| z.zeros_like().without_autodiff());
                            (gm, gz)
                        })
                    })
                    .collect(),
            );
            grads.autodiff.accumulate(model, GradientsParams::from_grads(backward, model));
        });
    }
    (Tensor::cat(nll, 0).sum().mul_scalar(scale), last)
}

/// Frobenius norm of M per sequence (each stream's [heads, d_k, d_v] block), averaged over the
/// streams and the layers with a compressive memory.
pub(crate) fn mean_memory_norm(memory: &MemoryState) -> Option<Tensor<1>> {
    let norms: Vec<Tensor<1>> = memory
        .layers
        .iter()
        .filter_map(|l| l.compressive())
        .map(|l| {
            let b = l.m.dims()[0] as i32;
            l.m.clone().reshape([b, -1]).powi_scalar(2).sum_dim(1).sqrt().mean()
        })
        .collect();
    // Left on the device: the trainer reads it with the step's loss.
    (!norms.is_empty()).then(|| Tensor::cat(norms, 0).mean())
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
            let got = mean_memory_norm(&state(batch, 2.0)).unwrap().into_scalar::<f64>();
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
