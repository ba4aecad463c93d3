//! Where a training step's time goes: wall-clock seconds per phase, summed over the step's
//! segments and windows (`infini bench train --json` reports them per step).
//!
//! The counters are process-wide atomics that cost two clock reads per timed call. On backends
//! that run asynchronously (GPUs) a phase's time is that of queueing its work, so the split is
//! only meaningful on Flex (CPU), where every operation finishes before the next starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A part of the training step.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Embedding and the blocks, segment by segment, with the memory (autodiff graph built).
    Forward,
    /// Output head and loss over the vocabulary, with their gradients by hand.
    Head,
    /// Autodiff backward through the blocks and the memory, and gradient accumulation.
    Backward,
    /// Gradient clipping and the optimizer update.
    Optimizer,
}

/// Every phase, in report order.
pub const ALL: [Phase; 4] = [Phase::Forward, Phase::Head, Phase::Backward, Phase::Optimizer];

impl Phase {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Head => "head",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
        }
    }
}

static NANOS: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Runs `f`, adding its wall-clock time to `phase`.
pub fn time<R>(phase: Phase, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let out = f();
    NANOS[phase as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Seconds per phase (in [`ALL`]'s order) since the last call, and resets them.
pub fn take() -> [f64; 4] {
    ALL.map(|p| NANOS[p as usize].swap(0, Ordering::Relaxed) as f64 / 1e9)
}
