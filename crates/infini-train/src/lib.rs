//! Training and evaluation of Infini-Transformer LMs: truncated backprop through the memory
//! across segments, optimizers and schedules, checkpoints, and perplexity evaluation.

pub mod config;
pub mod optim;
pub mod eval;
pub mod loss;
pub mod checkpoint;
pub mod memory_estimate;
pub mod hf;
pub mod backend;
pub mod trainer;
pub mod backprop;
mod parallel;
pub mod run_lock;

pub use config::RunConfig;
pub use trainer::{RunOptions, Start, Summary, train};
pub mod plot;
pub mod generate;
pub mod inspect;
pub mod bench;
pub mod phases;
pub mod check;
