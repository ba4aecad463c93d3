//! Training throughput measurement (`infini bench train`): the trainer's own step — truncated
//! backprop through the memory, gradient clipping, optimizer update — on synthetic tokens, so
//! that only the model, the autodiff and the optimizer are timed.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryState, ModelConfig};

use crate::config::RunConfig;
use crate::optim::{build, clip_global_norm_reading, learning_rate};
use crate::backprop::{StepGrads, backprop_example};

/// How the model FLOPs of a training token are counted (forward + backward = 3 × forward).
pub const FLOP_FORMULA: &str = "per token: 6·P (P = weights of all matrix products: attention projections, FFN, output head; \
     embeddings excluded) + per layer 6·2·N·H·d_k for local attention (scores and values over the whole \
     segment of N tokens, as computed) + per layer 6·2·H·d_k·d_v for the memory (retrieval and update)";

/// Model FLOPs of one training token under [`FLOP_FORMULA`].
pub fn flops_per_token(m: &ModelConfig) -> f64 {
    let (d, h, kv, dk, f, v, n, l) = (m.d_model, m.n_heads, m.kv_heads(), m.head_dim(), m.ffn_hidden, m.vocab_size, m.segment_len, m.n_layers);
    let weights = l * (2 * d * h * dk + 2 * d * kv * dk + 3 * d * f) + v * d;
    let local = 2 * n * h * dk;
    // Retrieval reads per query head, the update writes per key/value head.
    let memory = if m.memory.has_memory() { h * dk * dk + kv * dk * dk } else { 0 };
    (6 * weights + 6 * l * (local + memory)) as f64
}

/// Times of the timed steps and what they processed.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Seconds of each timed step (warm-up steps excluded).
    pub step_seconds: Vec<f64>,
    /// Target tokens per step.
    pub tokens_per_step: usize,
    /// Loss (per-token mean) of every step, warm-up included: it must fall.
    pub losses: Vec<f64>,
    /// Seconds per phase of each timed step ([`crate::phases::ALL`]'s order).
    pub phase_seconds: Vec<[f64; 4]>,
}

/// Random token ids, the same for every run.
fn synthetic_example(config: &RunConfig, rng: &mut u64) -> Vec<SegmentBatch> {
    let (b, n, k, v) = (config.data.batch_size, config.model.segment_len, config.segments_per_example(), config.model.vocab_size);
    let mut next = || (infini_data::stream::splitmix(rng) % v as u64) as u32;
    let streams: Vec<Vec<u32>> = (0..b).map(|_| (0..k * n + 1).map(|_| next()).collect()).collect();
    (0..k)
        .map(|s| {
            let mut seg = SegmentBatch {
                batch: b,
                segment_len: n,
                inputs: Vec::with_capacity(b * n),
                targets: Vec::with_capacity(b * n),
                mask: vec![1.0; b * n],
                reset: vec![s == 0; b],
                docs: vec![Some(0); b],
            };
            for tokens in &streams {
                seg.inputs.extend_from_slice(&tokens[s * n..(s + 1) * n]);
                seg.targets.extend_from_slice(&tokens[s * n + 1..(s + 1) * n + 1]);
            }
            seg
        })
        .collect()
}

/// Runs `warmup + steps` training steps of `config` (model, batch, example length, TBPTT
/// window, optimizer, clipping, precision) on `device` and times the last `steps`; `on_step`
/// hears each step's index, seconds and loss as it ends.
pub fn train_steps(
    config: &RunConfig,
    steps: usize,
    warmup: usize,
    device: &Device,
    mut on_step: impl FnMut(usize, f64, f64),
) -> Result<TrainBench, String> {
    let device = device.clone().autodiff();
    device.seed(config.train.seed);
    let compute = config.train.precision.compute();
    if let Some(dtype) = compute
        && !device.supports_dtype(dtype)
    {
        return Err(format!("train.precision = \"{dtype:?}\" is not supported by this backend; use \"f32\""));
    }
    let mut model: InfiniLm = config.model.init(&device).materialize().with_compute(compute);
    let mut optimizer = build(&config.train);
    let window = config.window();
    let mut bench = TrainBench { step_seconds: Vec::new(), tokens_per_step: 0, losses: Vec::new(), phase_seconds: Vec::new() };
    crate::phases::take();
    for step in 0..warmup + steps {
        // The same example every step: a loss that falls shows the updates work.
        let example = synthetic_example(config, &mut 0x2545_f491_4f6c_dd1du64);
        let targets: usize = example.iter().map(SegmentBatch::num_targets).sum();
        let start = Instant::now();
        let mut accumulator = StepGrads::new();
        let memory = MemoryState::empty(&config.model, config.data.batch_size, &device);
        let (loss, _) = backprop_example(&model, &example, memory, window, 1.0 / targets as f64, &device, &mut accumulator);
        let (updated, loss) = crate::phases::time(crate::phases::Phase::Optimizer, || {
            let mut grads = accumulator.grads(&model);
            let loss = clip_global_norm_reading(&model, &mut grads, config.train.grad_clip, &[loss]).1[0];
            (optimizer.step(learning_rate(&config.train, step as u64), model, grads), loss)
        });
        model = updated;
        // The step is done when the updated weights exist (GPU backends run asynchronously).
        device.sync().map_err(|e| format!("the device failed: {e:?}"))?;
        let seconds = start.elapsed().as_secs_f64();
        let phases = crate::phases::take();
        if !loss.is_finite() {
            return Err(format!("step {step}: the loss is not finite ({loss})"));
        }
        on_step(step, seconds, loss);
        bench.losses.push(loss);
        if step >= warmup {
            bench.step_seconds.push(seconds);
            bench.phase_seconds.push(phases);
        }
        bench.tokens_per_step = targets;
    }
    Ok(bench)
}
