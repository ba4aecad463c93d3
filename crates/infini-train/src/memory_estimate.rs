//! Peak training memory of a run config, estimated from its shapes without building anything:
//! weights, gradients, optimizer state, the activations a backprop window keeps for the
//! backward pass (with and without `train.checkpointing`), the compressive memory, and the
//! output head's logits. The activation count follows what this implementation keeps per token
//! and layer (listed in [`activation_floats_per_token_layer`]), which differs between the CPU
//! path (Flex, whose layers keep only what their hand-written gradients read) and the tensor-op
//! path of GPUs; `infini model-info --estimate-memory` prints both, and docs/benchmarks.md
//! compares the CPU figure with measured peak RSS.

use infini_model::ModelConfig;
use serde::Serialize;

use crate::config::{OptimizerKind, RunConfig};

/// What a training step holds at its peak, in bytes.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryEstimate {
    /// Parameters (f32).
    pub weights: u64,
    /// Their gradients (f32), plus the dense `[vocab, d]` gradients of the embedding and head.
    pub gradients: u64,
    /// Optimizer state: AdamW's two moments, or Adafactor's factored second moment.
    pub optimizer: u64,
    /// Activations kept for the backward pass of one backprop window (on the CPU path).
    pub activations: u64,
    /// The same with `train.checkpointing`: one segment's, plus the window's saved memories.
    pub activations_checkpointed: u64,
    /// The compressive memory (or XL cache) of every segment of a window (the graph keeps each).
    pub memory_state: u64,
    /// The output head's logits (turned into their gradient in place) for the segments whose
    /// head runs at once (those of a window, up to 128 MiB of logits; one segment with
    /// checkpointing), and the copy of the head's weight its products read: the CPU path
    /// (`infini_model::host::head`). The tensor-op path of GPUs holds up to three such logits.
    pub head: u64,
    /// The program itself: code, thread stacks, allocator arenas, the batch ([`RUNTIME`]).
    pub runtime: u64,
    /// Sum without checkpointing (CPU path).
    pub total: u64,
    /// Sum with checkpointing (CPU path).
    pub total_checkpointed: u64,
    /// Sum without checkpointing on a GPU (the tensor-op path keeps more activations).
    pub gpu_total: u64,
    /// Sum with checkpointing on a GPU.
    pub gpu_total_checkpointed: u64,
    /// Whether the config has checkpointing on (then `total_checkpointed` applies).
    pub checkpointing: bool,
}

/// What a training process holds apart from its tensors: the part of a small run's peak RSS
/// (configs/tiny.toml, with checkpointing) that no tensor explains.
pub const RUNTIME: u64 = 16 << 20;

/// f32 values kept per token and layer for the backward pass, on the CPU path (`host`) or the
/// tensor-op path of GPUs:
/// - 2 RMS norms: input and normalised input, 2·d each;
/// - projections: Q and K after RoPE, V (kept twice: by attention, contiguous, and by the memory
///   update); the tensor-op path also Q and K before RoPE;
/// - local attention: the softmax probabilities, H·N (the largest term for long segments), and
///   its output; the tensor-op path keeps two more score-sized terms, 3·H·N;
/// - memory: σ(Q), σ(K) and their derivatives, the read's numerator, the read and the mixed
///   output (about 2·(H + kv)·d_k + 3·H·d_k);
/// - SwiGLU: the two up projections and the product, 3·F; the tensor-op path also SiLU's value
///   and derivative, 5·F.
pub fn activation_floats_per_token_layer(m: &ModelConfig, host: bool) -> u64 {
    let (d, h, kv, dk, f, n) = (m.d_model, m.n_heads, m.kv_heads(), m.head_dim(), m.ffn_hidden, m.segment_len);
    let norms = 4 * d;
    let memory = if m.memory.has_memory() { 2 * (h + kv) * dk + 3 * h * dk } else { h * dk };
    let rest = if host {
        let projections = h * dk + 3 * kv * dk;
        let attention = h * n + h * dk;
        projections + attention + 3 * f
    } else {
        let projections = 2 * h * dk + 3 * kv * dk;
        let attention = 3 * h * n + h * dk;
        projections + attention + 5 * f
    };
    (norms + memory + rest) as u64
}

/// The estimate for a run config: its model, `data.batch_size` streams, its backprop windows
/// (`train.tbptt_segments`), optimizer and `train.checkpointing`.
pub fn estimate(config: &RunConfig) -> MemoryEstimate {
    let (m, batch, checkpointing) = (&config.model, config.data.batch_size, config.train.checkpointing);
    let f32s = 4u64;
    let params = m.num_params() as u64;
    let window = config.window_segments().max(1);
    let (v, d) = (m.vocab_size as u64, m.d_model as u64);
    let weights = params * f32s;
    // The hand-computed embedding and head gradients are dense [vocab, d] sums.
    let gradients = (params + v * d * if m.tie_embeddings { 1 } else { 2 }) * f32s;
    let optimizer = match config.train.optimizer {
        OptimizerKind::Adamw => 2 * params * f32s,
        // Factored second moments: rows + columns per matrix; about the weights / d in all.
        OptimizerKind::Adafactor => (params / d.max(1) * 2 + params / 64) * f32s,
    };
    let tokens_per_segment = (batch * m.segment_len) as u64;
    let per_segment = |host| {
        activation_floats_per_token_layer(m, host) * tokens_per_segment * m.n_layers as u64 * f32s
            + tokens_per_segment * d * 2 * f32s // the embedded inputs and the final hidden states
    };
    let memory_per_segment = (m.memory_floats() * batch) as u64 * f32s;
    let memory_state = memory_per_segment * window as u64;
    let activations = per_segment(true) * window as u64;
    let activations_checkpointed = per_segment(true) + memory_state;
    // The logits, their gradient built in place, over the segments whose head runs together,
    // and the host copy of the head's weight.
    let logits = |segments: usize| segments as u64 * tokens_per_segment * v * f32s + v * d * f32s;
    let group = crate::backprop::head_group(batch * m.segment_len, m.vocab_size, window);
    let head = logits(group);
    let base = weights + gradients + optimizer + RUNTIME;
    MemoryEstimate {
        weights,
        gradients,
        optimizer,
        activations,
        activations_checkpointed,
        memory_state,
        head,
        runtime: RUNTIME,
        total: base + head + activations + memory_state,
        total_checkpointed: base + logits(1) + activations_checkpointed,
        gpu_total: base + head + per_segment(false) * window as u64 + memory_state,
        gpu_total_checkpointed: base + logits(1) + per_segment(false) + memory_state,
        checkpointing,
    }
}
