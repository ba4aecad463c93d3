//! The model's hyper-parameters, as read from the `[model]` table of a TOML config.

use serde::{Deserialize, Serialize};

/// What each layer carries from one segment to the next (`model.memory`): Infini-attention's
/// compressive memory with the linear or the delta update, nothing, or a Transformer-XL cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// `M += σ(K)ᵀV`, `z += Σ σ(K)`.
    Linear,
    /// `M += σ(K)ᵀ(V − σ(K)M / σ(K)z)`, `z += Σ σ(K)`.
    Delta,
    /// No memory at all: segment-local attention only (the paper's baseline).
    None,
    /// Transformer-XL baseline: attend also to the previous segment's keys and values, cached
    /// without gradient (memory grows with the segment length, not compressed).
    Xl,
}

impl MemoryKind {
    /// Whether this model keeps Infini-attention's compressive memory (and gates β).
    pub fn has_memory(self) -> bool {
        matches!(self, MemoryKind::Linear | MemoryKind::Delta)
    }

    /// Whether anything is carried from one segment to the next (compressive memory or XL cache).
    pub fn carries_state(self) -> bool {
        !matches!(self, MemoryKind::None)
    }
}

/// Hyper-parameters of an Infini-Transformer language model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size; must equal the tokenizer's.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Attention (query) heads per layer.
    pub n_heads: usize,
    /// Key/value heads per layer (grouped-query attention: each serves `n_heads / n_kv_heads`
    /// query heads and holds one compressive memory); defaults to `n_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_kv_heads: Option<usize>,
    /// Key/value dimension per head; defaults to `d_model / n_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Hidden size of the SwiGLU feed-forward network.
    pub ffn_hidden: usize,
    /// Tokens per segment N: the span of local attention and the memory's write unit.
    #[serde(default = "default_segment_len")]
    pub segment_len: usize,
    /// Memory update rule, or `none` for the local-attention-only baseline.
    #[serde(default = "default_memory")]
    pub memory: MemoryKind,
    /// Initial value of every head's gate β (sigmoid(0) = 0.5 mixes both paths equally).
    #[serde(default)]
    pub gate_init: f64,
    /// RoPE base frequency of the local attention path.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Epsilon of the RMS norms.
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    /// Share the token embedding with the output head.
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// Dropout on the attention and FFN outputs during training.
    #[serde(default)]
    pub dropout: f64,
    /// Standard deviation of the normal weight initialisation.
    #[serde(default = "default_init_std")]
    pub init_std: f64,
}

fn default_segment_len() -> usize {
    2048
}
fn default_memory() -> MemoryKind {
    MemoryKind::Linear
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_init_std() -> f64 {
    0.02
}

/// A config value that cannot build a model; `key` names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("model.{key}: {message}")]
pub struct ConfigError {
    /// The field, as written in the TOML `[model]` table.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { key, message: message.into() }
}

impl ModelConfig {
    /// A small config for tests and examples (memory `linear`).
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: None,
            head_dim: None,
            ffn_hidden: 128,
            segment_len: 32,
            memory: MemoryKind::Linear,
            gate_init: 0.0,
            rope_theta: default_rope_theta(),
            norm_eps: default_norm_eps(),
            tie_embeddings: true,
            dropout: 0.0,
            init_std: default_init_std(),
        }
    }

    /// The per-head key/value dimension.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// Key/value heads (= memories) per layer.
    pub fn kv_heads(&self) -> usize {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    /// Checks every field; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("ffn_hidden", self.ffn_hidden),
            ("segment_len", self.segment_len),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(err(key, "must be at least 1, got 0"));
            }
        }
        match self.head_dim {
            Some(0) => return Err(err("head_dim", "must be at least 1, got 0")),
            Some(h) if h * self.n_heads != self.d_model => {
                return Err(err(
                    "head_dim",
                    format!(
                        "n_heads ({}) × head_dim ({h}) = {} must equal d_model ({}); fix one of them or drop head_dim",
                        self.n_heads,
                        h * self.n_heads,
                        self.d_model
                    ),
                ));
            }
            None if self.d_model % self.n_heads != 0 => {
                return Err(err(
                    "n_heads",
                    format!("d_model ({}) is not divisible by n_heads ({})", self.d_model, self.n_heads),
                ));
            }
            _ => {}
        }
        match self.n_kv_heads {
            Some(0) => return Err(err("n_kv_heads", "must be at least 1, got 0")),
            Some(kv) if self.n_heads % kv != 0 => {
                return Err(err(
                    "n_kv_heads",
                    format!("n_heads ({}) must be a multiple of n_kv_heads ({kv}); each key/value head serves a group of query heads", self.n_heads),
                ));
            }
            _ => {}
        }
        if self.head_dim() % 2 != 0 {
            return Err(err("head_dim", format!("must be even for RoPE, got {}", self.head_dim())));
        }
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return Err(err("dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        for (key, value) in [("rope_theta", self.rope_theta), ("norm_eps", self.norm_eps), ("init_std", self.init_std)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(err(key, format!("must be a positive number, got {value}")));
            }
        }
        if !self.gate_init.is_finite() {
            return Err(err("gate_init", format!("must be finite, got {}", self.gate_init)));
        }
        Ok(())
    }

    /// Number of trainable parameters of the model this config builds.
    pub fn num_params(&self) -> usize {
        let (d, h, kv, dk, f, v) = (self.d_model, self.n_heads, self.kv_heads(), self.head_dim(), self.ffn_hidden, self.vocab_size);
        let gate = if self.memory.has_memory() { h } else { 0 };
        let attention = 2 * d * h * dk + 2 * d * kv * dk + gate;
        let ffn = 3 * d * f;
        let norms = 2 * d;
        let head = if self.tie_embeddings { 0 } else { v * d };
        v * d + self.n_layers * (attention + ffn + norms) + d + head
    }

    /// f32 values of memory per sequence: layers · kv heads · d_k · (d_v + 1) for Infini-attention,
    /// layers · kv heads · N · (d_k + d_v) for the Transformer-XL cache, 0 without memory.
    pub fn memory_floats(&self) -> usize {
        let dk = self.head_dim();
        let per_head = match self.memory {
            MemoryKind::Linear | MemoryKind::Delta => dk * dk + dk,
            MemoryKind::Xl => self.segment_len * 2 * dk,
            MemoryKind::None => 0,
        };
        self.n_layers * self.kv_heads() * per_head
    }
}
