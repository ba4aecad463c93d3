//! Infini-attention (Munkhdalai et al. 2024, arXiv 2404.07143) and the Infini-Transformer LM.
//!
//! The model processes a sequence one segment at a time. Each layer attends causally inside
//! the segment (with RoPE) and reads a compressive memory of all earlier segments; a learned
//! per-head gate mixes the two. The memory ([`MemoryState`]) is passed in and returned by every
//! call, so the caller controls truncated backprop (`detach`) and document boundaries (`reset`).

pub mod attention;
pub mod config;
pub mod memory;
pub mod model;
pub mod precision;
pub mod rope;
pub mod host;

pub use attention::InfiniAttention;
pub use config::{ConfigError, MemoryKind, ModelConfig};
pub use memory::{LayerMemory, Memory, MemoryState, XlCache, sigma};
pub use model::{InfiniLm, StreamState};
pub use attention::KvCache;
