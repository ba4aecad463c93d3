//! The Infini-Transformer language model: embedding → blocks → final norm → LM head.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};

use crate::attention::{InfiniAttention, KvCache};
use crate::config::{MemoryKind, ModelConfig};
use crate::host::rms_norm;
use crate::memory::{LayerMemory, MemoryState};
use crate::precision::{Compute, linear, matmul};
use crate::rope::Rope;

/// SwiGLU feed-forward: `w2(silu(w1 x) ⊙ w3 x)`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// Gate projection `d_model → ffn_hidden`.
    pub w1: Linear,
    /// Output projection `ffn_hidden → d_model`.
    pub w2: Linear,
    /// Up projection `d_model → ffn_hidden`.
    pub w3: Linear,
    /// Type of the matrix products (`None` = f32).
    #[module(skip)]
    pub compute: Compute,
}

impl FeedForward {
    fn new(config: &ModelConfig, out_std: f64, device: &Device) -> Self {
        let (d, f) = (config.d_model, config.ffn_hidden);
        let init = |d_in, d_out, std| {
            LinearConfig::new(d_in, d_out)
                .with_bias(false)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        Self { w1: init(d, f, config.init_std), w2: init(f, d, out_std), w3: init(d, f, config.init_std), compute: None }
    }

    /// Applies the FFN to `[B, N, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let c = self.compute;
        let gate = linear(&self.w1, x.clone(), c);
        let up = linear(&self.w3, x, c);
        linear(&self.w2, crate::host::swiglu(gate, up, |gate, up| silu(gate) * up), c)
    }
}

/// A pre-norm block: `x + attn(norm(x))`, then `x + ffn(norm(x))`.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention.
    pub attn_norm: RmsNorm,
    /// Infini-attention.
    pub attn: InfiniAttention,
    /// Norm before the FFN.
    pub ffn_norm: RmsNorm,
    /// SwiGLU FFN.
    pub ffn: FeedForward,
    dropout: Dropout,
}

impl Block {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        // GPT-2's scaled init of the projections that write into the residual stream.
        let out_std = config.init_std / (2.0 * config.n_layers as f64).sqrt();
        let norm = || RmsNormConfig::new(config.d_model).with_epsilon(config.norm_eps).init(device);
        Self {
            attn_norm: norm(),
            attn: InfiniAttention::new(config, out_std, device),
            ffn_norm: norm(),
            ffn: FeedForward::new(config, out_std, device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// One segment through the block, reading and returning this layer's memory.
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, memory: Option<LayerMemory>) -> (Tensor<3>, Option<LayerMemory>) {
        let (x, memory, _) = self.forward_chunk(x, rope, memory, None, true);
        (x, memory)
    }

    /// A chunk of a segment through the block (see [`InfiniAttention::forward_chunk`]).
    pub fn forward_chunk(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        memory: Option<LayerMemory>,
        cache: Option<KvCache>,
        complete: bool,
    ) -> (Tensor<3>, Option<LayerMemory>, Option<KvCache>) {
        let (a, memory, cache) = self.attn.forward_chunk(rms_norm(&self.attn_norm, x.clone()), rope, memory, cache, complete);
        let x = x + self.dropout.forward(a);
        let x = x.clone() + self.dropout.forward(self.ffn.forward(rms_norm(&self.ffn_norm, x)));
        (x, memory, cache)
    }
}

/// Where streams being read token by token stand: the memory of their finished segments, and
/// each layer's key/value cache of the current segment (`position` tokens into it).
#[derive(Clone, Debug)]
pub struct StreamState {
    /// Memory of the finished segments.
    pub memory: MemoryState,
    /// Per layer, the cache of the current segment (empty at a segment boundary).
    pub caches: Vec<KvCache>,
    /// Tokens already read of the current segment.
    pub position: usize,
}

impl StreamState {
    /// Streams that have read nothing yet.
    pub fn new(config: &ModelConfig, batch: usize, device: &burn::tensor::Device) -> Self {
        Self { memory: MemoryState::empty(config, batch, device), caches: Vec::new(), position: 0 }
    }
}

/// The Infini-Transformer LM. Process a long sequence segment by segment, threading the
/// [`MemoryState`] returned by one call into the next.
#[derive(Module, Debug)]
pub struct InfiniLm {
    /// Token embedding `[vocab, d_model]` (also the output head when tied).
    pub embedding: Embedding,
    /// The transformer blocks.
    pub blocks: Vec<Block>,
    /// Norm after the last block.
    pub final_norm: RmsNorm,
    /// Separate output head `d_model → vocab`, absent when tied to the embedding.
    pub lm_head: Option<Linear>,
    rope: Rope,
    segment_len: usize,
    #[module(skip)]
    memory: MemoryKind,
    #[module(skip)]
    compute: Compute,
}

/// Draws the initial value of every lazily initialised parameter it visits, in the module's
/// field order.
struct InitialiseParams;

impl burn::module::ModuleVisitor for InitialiseParams {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

impl ModelConfig {
    /// Builds a freshly initialised model on `device`, its weights drawn now in a fixed order
    /// (so a seed gives the same model whatever runs first: a forward pass, a copy without
    /// autodiff, a checkpoint load). Panics on an invalid config: call
    /// [`ModelConfig::validate`] first to get an error instead.
    pub fn init(&self, device: &Device) -> InfiniLm {
        let model = self.init_lazy(device);
        model.visit(&mut InitialiseParams);
        model
    }

    /// The model with its weights not drawn yet: for loading weights into (a checkpoint, a
    /// pretrained model), which then never allocates the random ones.
    pub fn init_lazy(&self, device: &Device) -> InfiniLm {
        if let Err(e) = self.validate() {
            panic!("invalid model config: {e}");
        }
        let init = Initializer::Normal { mean: 0.0, std: self.init_std };
        InfiniLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).with_initializer(init.clone()).init(device),
            blocks: (0..self.n_layers).map(|_| Block::new(self, device)).collect(),
            final_norm: RmsNormConfig::new(self.d_model).with_epsilon(self.norm_eps).init(device),
            lm_head: (!self.tie_embeddings).then(|| {
                LinearConfig::new(self.d_model, self.vocab_size)
                    .with_bias(false)
                    .with_initializer(init)
                    .init(device)
            }),
            // The XL baseline places the previous segment's keys before this segment's.
            rope: Rope::new(self.segment_len * if self.memory == MemoryKind::Xl { 2 } else { 1 }, self.head_dim(), self.rope_theta, device),
            segment_len: self.segment_len,
            memory: self.memory,
            compute: None,
        }
    }
}

impl InfiniLm {
    /// Runs the matrix products in `compute` (e.g. `Some(DType::BF16)`) from now on; weights,
    /// residual stream, norms, softmax statistics and the memory stay f32. `None` = all f32.
    pub fn with_compute(mut self, compute: Compute) -> Self {
        self.compute = compute;
        for block in &mut self.blocks {
            block.attn.compute = compute;
            block.ffn.compute = compute;
        }
        self
    }

    /// The type of the matrix products (`None` = f32).
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Embeds `tokens: [B, N]` into `[B, N, d_model]`.
    pub fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.embedding.forward(tokens)
    }

    /// Runs one segment of embedded inputs `x: [B, N, d_model]` (N ≤ segment_len) through the
    /// blocks, first emptying the memory of the streams flagged in `reset` (one flag per stream,
    /// or empty for none). Returns the final-normed hidden states and the updated memory.
    pub fn forward_embedded(&self, x: Tensor<3>, memory: MemoryState, reset: &[bool]) -> (Tensor<3>, MemoryState) {
        let [b, n, _] = x.dims();
        assert!(n <= self.segment_len, "segment of {n} tokens exceeds segment_len {}", self.segment_len);
        assert!(reset.is_empty() || reset.len() == b, "reset has {} flags for a batch of {b}", reset.len());
        let (h, memory, _) = self.blocks_chunk(x, memory.reset(reset), Vec::new(), true);
        (h, memory)
    }

    /// A chunk through every block: `caches` holds each layer's cache of the current segment
    /// (empty at a segment start). Returns the final-normed hidden states, the memory (updated
    /// if `complete`) and the extended caches (empty if `complete`).
    fn blocks_chunk(
        &self,
        x: Tensor<3>,
        memory: MemoryState,
        caches: Vec<KvCache>,
        complete: bool,
    ) -> (Tensor<3>, MemoryState, Vec<KvCache>) {
        let b = x.dims()[0];
        let has_memory = !memory.layers.is_empty();
        assert!(
            !has_memory || memory.batch_size() == b,
            "memory holds {} streams, batch has {b}",
            memory.batch_size()
        );
        assert!(
            has_memory == self.memory.carries_state(),
            "memory state does not match the model (one has memory, the other not)"
        );
        let mut layers = memory.layers.into_iter();
        let mut caches = caches.into_iter();
        let (mut next_memory, mut next_caches) = (Vec::with_capacity(self.blocks.len()), Vec::new());
        let mut h = x;
        for block in &self.blocks {
            let (out, mem, cache) = block.forward_chunk(h, &self.rope, layers.next(), caches.next(), complete);
            h = out;
            next_memory.extend(mem);
            next_caches.extend(cache);
        }
        (rms_norm(&self.final_norm, h), MemoryState { layers: next_memory }, next_caches)
    }

    /// Reads `tokens: [B, T]` (any T) as the continuation of the streams in `state`, cutting
    /// them into segments exactly as [`Self::forward`] does, but keeping a key/value cache of
    /// the unfinished segment so tokens can be fed a few at a time (generation). Returns the
    /// logits `[B, T, vocab]`.
    pub fn forward_stream(&self, tokens: Tensor<2, Int>, mut state: StreamState) -> (Tensor<3>, StreamState) {
        let [b, t] = tokens.dims();
        let mut outputs = Vec::new();
        let mut done = 0;
        while done < t {
            let take = (t - done).min(self.segment_len - state.position);
            let complete = state.position + take == self.segment_len;
            let chunk = tokens.clone().slice([0..b, done..done + take]);
            let (h, memory, caches) = self.blocks_chunk(self.embed(chunk), state.memory, state.caches, complete);
            outputs.push(self.logits(h));
            state = StreamState { memory, caches, position: if complete { 0 } else { state.position + take } };
            done += take;
        }
        (Tensor::cat(outputs, 1), state)
    }

    /// The output head as a `[d_model, vocab]` matrix (the embedding transposed when tied).
    pub fn head_weight(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.weight.val(),
            None => self.embedding.weight.val().transpose(),
        }
    }

    /// Projects final hidden states `[B, N, d_model]` to logits `[B, N, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = hidden.dims();
        let w = self.head_weight();
        let vocab = w.dims()[1];
        matmul(hidden.reshape([b * n, d]), w, self.compute).reshape([b, n, vocab])
    }

    /// One segment of `tokens: [B, N]` through the blocks, returning what each layer's
    /// attention read (its normed input `[B, N, d_model]`, from which its Q, K and V are
    /// projected) and the updated memory: for diagnostics of what the memory stores and reads.
    pub fn attention_inputs(&self, tokens: Tensor<2, Int>, memory: MemoryState) -> (Vec<Tensor<3>>, MemoryState) {
        let mut layers = memory.layers.into_iter();
        let (mut inputs, mut next) = (Vec::with_capacity(self.blocks.len()), Vec::with_capacity(self.blocks.len()));
        let mut h = self.embed(tokens);
        for block in &self.blocks {
            inputs.push(rms_norm(&block.attn_norm, h.clone()));
            let (out, memory) = block.forward(h, &self.rope, layers.next());
            h = out;
            next.extend(memory);
        }
        (inputs, MemoryState { layers: next })
    }

    /// One segment of `tokens: [B, N]` → logits `[B, N, vocab]` and the updated memory.
    pub fn forward(&self, tokens: Tensor<2, Int>, memory: MemoryState, reset: &[bool]) -> (Tensor<3>, MemoryState) {
        let (hidden, memory) = self.forward_embedded(self.embed(tokens), memory, reset);
        (self.logits(hidden), memory)
    }
}
