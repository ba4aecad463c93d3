//! Self-checks of a compute backend (`infini check`, and the backend tests of CI): what a GPU
//! build must compute before its speed means anything. Each check compares the backend with
//! Flex (the pure-Rust CPU backend, computed in the same process from the same weights) or with
//! a property that any correct backend has:
//!
//! - the logits of every memory kind over three segments equal Flex's (1e-4 of the largest logit),
//! - a token changes nothing before it and something after it (causality),
//! - the memory carries gradient to an earlier segment, and none when detached,
//! - Burn's fused causal attention (the local path on GPU backends) equals attention written out,
//!   values and gradients,
//! - training steps in f32 (and bf16 where the device has it) lower the loss of an example.
//!
//! A GPU backend reports errors by panicking; each check turns a panic into a failed check.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{InfiniLm, MemoryKind, MemoryState, ModelConfig};

use crate::RunConfig;
use crate::config::Precision;

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was checked.
    pub check: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The measured figure, or why it failed.
    pub detail: String,
}

/// A check: `Ok(figure)` when it holds, `Err(reason)` when not.
pub type Check = fn(&Device) -> Result<String, String>;

/// Every check, in the order `infini check` runs them.
pub const ALL: [(&str, Check); 6] = [
    ("logits of every memory kind equal Flex's", logits_match_flex),
    ("causality across segments", causality),
    ("gradient through the memory", memory_gradient),
    ("fused causal attention equals explicit", fused_attention),
    ("training steps lower the loss (f32)", training_f32),
    ("training steps lower the loss (bf16)", training_bf16),
];

/// Runs one check, a panic counting as a failure.
pub fn run(check: &'static str, f: Check, device: &Device) -> Outcome {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| f(device));
    std::panic::set_hook(hook);
    let (passed, detail) = match result {
        Ok(Ok(figure)) => (true, figure),
        Ok(Err(reason)) => (false, reason),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            (false, format!("the backend panicked: {}", message.unwrap_or_else(|| "no message".into())))
        }
    };
    Outcome { check, passed, detail }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 values")
}

/// Largest absolute difference relative to the largest |reference|.
fn rel_err(a: &[f64], reference: &[f64]) -> f64 {
    let scale = reference.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    a.iter().zip(reference).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// A tiny model with large weights (sharp attention, large memory terms) and segments of 8.
fn small(memory: MemoryKind) -> ModelConfig {
    let mut c = ModelConfig::tiny(64);
    c.segment_len = 8;
    c.init_std = 0.3;
    c.memory = memory;
    c
}

/// Logits of consecutive segments of 2 streams, the memory carried.
fn logits(model: &InfiniLm, config: &ModelConfig, segments: &[Vec<i64>], device: &Device) -> Vec<f64> {
    let streams = segments.first().map_or(1, |s| s.len() / config.segment_len);
    let mut memory = MemoryState::empty(config, streams, device);
    let mut out = Vec::new();
    for seg in segments {
        let t = Tensor::<2, Int>::from_data(TensorData::new(seg.clone(), [streams, config.segment_len]), device);
        let (l, next) = model.forward(t, memory, &[]);
        memory = next;
        out.extend(values(l));
    }
    out
}

/// The logits of 3 segments of 2 streams for linear, delta, none and xl memory, against Flex
/// from the same weights.
pub fn logits_match_flex(device: &Device) -> Result<String, String> {
    let flex = Device::flex();
    // f32 products in TF32 (CUDA) carry about 5e-4 relative error each.
    let bound = if crate::backend::tf32_matmul(device) { 2e-2 } else { 1e-4 };
    let mut worst = 0.0f64;
    for memory in [MemoryKind::Linear, MemoryKind::Delta, MemoryKind::None, MemoryKind::Xl] {
        let config = small(memory);
        let model = config.init(&flex);
        let segments: Vec<Vec<i64>> = (0..3)
            .map(|s| (0..2 * config.segment_len).map(|i| ((i * 13 + s * 7 + i / 3) % config.vocab_size) as i64).collect())
            .collect();
        let reference = logits(&model, &config, &segments, &flex);
        let e = rel_err(&logits(&model.clone().to_device(device), &config, &segments, device), &reference);
        if !(e <= bound) {
            return Err(format!("{memory:?} memory: logits differ from Flex's by {e:.1e} of the largest (bound {bound:.0e})"));
        }
        worst = worst.max(e);
    }
    Ok(format!("within {worst:.1e} of Flex (bound {bound:.0e})"))
}

/// One token of the second segment changed: no logit before it moves, every one from it on does.
pub fn causality(device: &Device) -> Result<String, String> {
    let config = small(MemoryKind::Linear);
    let model = config.init(device);
    let (n, v) = (config.segment_len, config.vocab_size);
    let a: Vec<i64> = (0..2 * n).map(|i| ((i * 37 + i / 5) % v) as i64).collect();
    let mut b = a.clone();
    let at = n + 3;
    b[at] = (b[at] + 1) % v as i64;
    let split = |t: &[i64]| vec![t[..n].to_vec(), t[n..].to_vec()];
    let (x, y) = (logits(&model, &config, &split(&a), device), logits(&model, &config, &split(&b), device));
    // Flex computes both runs bit for bit alike; with kernel fusion a GPU backend may group (and
    // so round) the two runs' operations differently, by about 1e-6. A leak moves logits by far more.
    let bound = if device.clone() == Device::flex() { 1e-6 } else { 1e-4 };
    let mut before = 0.0f64;
    for pos in 0..2 * n {
        let d = x[pos * v..(pos + 1) * v].iter().zip(&y[pos * v..(pos + 1) * v]).fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        if pos < at {
            if d > bound {
                return Err(format!("position {pos} changed by {d:.1e} when a later token (position {at}) changed"));
            }
            before = before.max(d);
        } else if d <= 1e-6 {
            return Err(format!("position {pos} did not change after the token at {at} changed"));
        }
    }
    Ok(format!("earlier positions moved at most {before:.1e}"))
}

/// Gradient of a later segment's output with respect to an earlier segment's input: non-zero
/// through the memory, exactly zero with the memory detached.
pub fn memory_gradient(device: &Device) -> Result<String, String> {
    let device = device.clone().autodiff();
    let config = small(MemoryKind::Linear);
    let model = config.init(&device);
    let (n, d) = (config.segment_len, config.d_model);
    let grad = |detach: bool| {
        let input = |m: usize| (0..n * d).map(|i| ((i % m) as f32 - (m / 2) as f32) / (m / 2) as f32).collect::<Vec<_>>();
        let x1 = Tensor::<3>::from_data(TensorData::new(input(17), [1, n, d]), &device).require_grad();
        let x2 = Tensor::<3>::from_data(TensorData::new(input(13), [1, n, d]), &device);
        let (_, memory) = model.forward_embedded(x1.clone(), MemoryState::empty(&config, 1, &device), &[]);
        let memory = if detach { memory.detach() } else { memory };
        let (h, _) = model.forward_embedded(x2, memory, &[]);
        let grads = h.powi_scalar(2).sum().backward();
        x1.grad(&grads).map_or(0.0, |g| g.abs().sum().into_scalar::<f64>())
    };
    let (through, detached) = (grad(false), grad(true));
    if !(through > 1e-8) {
        return Err(format!("no gradient through the memory ({through:e})"));
    }
    if detached != 0.0 {
        return Err(format!("gradient {detached:e} through a detached memory"));
    }
    Ok(format!("|grad| {through:.2e} through the memory, 0 detached"))
}

/// Burn's `attention` (causal; fused on the GPU backends) against scores, causal mask, softmax
/// and values written out: outputs and the gradients of Q, K and V.
pub fn fused_attention(device: &Device) -> Result<String, String> {
    use burn::tensor::activation::softmax;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Bool, Distribution};
    let device = device.clone().autodiff();
    device.seed(5);
    let (b, h, n, d) = (2, 3, 12, 8);
    let random = || Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 1.0), &device);
    let (q0, k0, v0, weights) = (random(), random(), random(), random());
    let run = |fused: bool| {
        let (q, k, v) = (q0.clone().require_grad(), k0.clone().require_grad(), v0.clone().require_grad());
        let out = if fused {
            attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions { scale: None, softcap: None, is_causal: true })
        } else {
            let scores = q.clone().matmul(k.clone().transpose()).div_scalar((d as f64).sqrt());
            let rows = Tensor::<1, Int>::arange(0..n as i64, &device).reshape([n, 1]);
            let cols = Tensor::<1, Int>::arange(0..n as i64, &device).reshape([1, n]);
            let future: Tensor<2, Bool> = cols.greater(rows);
            let masked = scores.mask_fill(future.reshape([1, 1, n, n]).expand([b, h, n, n]), f32::NEG_INFINITY);
            softmax(masked, 3).matmul(v.clone())
        };
        let grads = (out.clone() * weights.clone()).sum().backward();
        let g = |t: &Tensor<4>| t.grad(&grads).map(values).unwrap_or_default();
        [values(out), g(&q), g(&k), g(&v)]
    };
    let (fused, explicit) = (run(true), run(false));
    let mut worst = 0.0f64;
    for (what, (a, e)) in ["output", "dQ", "dK", "dV"].iter().zip(fused.iter().zip(&explicit)) {
        if a.len() != e.len() {
            return Err(format!("fused attention has no {what}"));
        }
        let err = rel_err(a, e);
        if !(err < 1e-4) {
            return Err(format!("fused attention's {what} differs from the explicit one by {err:.1e}"));
        }
        worst = worst.max(err);
    }
    Ok(format!("outputs and gradients within {worst:.1e}"))
}

/// A tiny run config: 2 streams of 4 segments of 16 tokens, backprop through 2 segments.
pub fn tiny_run(precision: Precision) -> RunConfig {
    let mut config: RunConfig = toml::from_str(
        r#"
[model]
vocab_size = 256
d_model = 32
n_layers = 2
n_heads = 2
ffn_hidden = 64
segment_len = 16
memory = "linear"
[data]
prepared = ""
batch_size = 2
seq_len = 64
[train]
steps = 10
lr = 1e-2
warmup_steps = 2
tbptt_segments = 2
[checkpoint]
dir = ""
"#,
    )
    .expect("the check's config parses");
    config.train.precision = precision;
    config
}

/// The losses of 10 training steps on one example of synthetic tokens, as `infini bench
/// train` runs them; they must fall.
fn training(device: &Device, precision: Precision) -> Result<Vec<f64>, String> {
    let losses = crate::bench::train_steps(&tiny_run(precision), 10, 0, device, |_, _, _| {})?.losses;
    if !(losses[losses.len() - 1] < losses[0]) {
        return Err(format!("the loss did not fall in 10 steps: {losses:?}"));
    }
    Ok(losses)
}

/// [`training`] in f32.
pub fn training_f32(device: &Device) -> Result<String, String> {
    let losses = training(device, Precision::F32)?;
    Ok(format!("loss {:.3} -> {:.3} in 10 steps", losses[0], losses[losses.len() - 1]))
}

/// [`training`] with bf16 matrix products, and how far its losses are from f32's; passes with a
/// note where the device has no bf16.
pub fn training_bf16(device: &Device) -> Result<String, String> {
    if !device.supports_dtype(burn::tensor::DType::BF16) {
        return Ok("skipped: the device has no bf16".into());
    }
    let (bf16, f32) = (training(device, Precision::Bf16)?, training(device, Precision::F32)?);
    let gap = bf16.iter().zip(&f32).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    Ok(format!("loss {:.3} -> {:.3} in 10 steps, at most {gap:.1e} from f32's", bf16[0], bf16[bf16.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_or_failing_check_is_a_failed_outcome() {
        let panics: Check = |_| panic!("kernel launch failed");
        let fails: Check = |_| Err("off by 1".into());
        let o = run("panics", panics, &Device::flex());
        assert!(!o.passed && o.detail.contains("kernel launch failed"), "{o:?}");
        let o = run("fails", fails, &Device::flex());
        assert!(!o.passed && o.detail == "off by 1", "{o:?}");
    }
}
