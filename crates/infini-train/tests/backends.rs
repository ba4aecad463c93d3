//! The same checks on every backend compiled in: Flex always; wgpu when built with
//! `--features wgpu` and a Vulkan driver is present (lavapipe on CPU-only machines; `.ci/run`
//! installs it). Set INFINI_REQUIRE_BACKENDS=wgpu to fail instead of skipping a backend without
//! a device.
//!
//! Tolerance against Flex: logits within 1e-4 of the largest |logit| (f32 on both sides).

mod common;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{InfiniLm, MemoryState, MemoryKind, ModelConfig};
use infini_train::backend::{available, device};
use infini_train::{RunOptions, Start, train};

fn backends() -> Vec<(&'static str, Device)> {
    let required = std::env::var("INFINI_REQUIRE_BACKENDS").unwrap_or_default();
    available()
        .into_iter()
        .filter_map(|name| match device(name) {
            Ok(d) => Some((name, d)),
            Err(e) if required.split(',').any(|r| r == name) => panic!("required backend {name}: {e}"),
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                None
            }
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_into_vec::<f64>().unwrap()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn small(memory: MemoryKind) -> ModelConfig {
    let mut c = ModelConfig::tiny(64);
    c.segment_len = 8;
    c.init_std = 0.3;
    c.memory = memory;
    c
}

fn token_ids(batch: usize, len: usize, vocab: usize, salt: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..batch * len).map(|i| ((i * 37 + salt * 11 + i / 5) % vocab) as i64).collect();
    Tensor::from_data(TensorData::new(ids, [batch, len]), device)
}

/// Logits of 3 segments for 2 streams.
fn run(model: &InfiniLm, config: &ModelConfig, tokens: &[Vec<i64>], device: &Device) -> Vec<f64> {
    let mut memory = MemoryState::empty(config, 2, device);
    let mut out = Vec::new();
    for seg in tokens {
        let t = Tensor::<2, Int>::from_data(TensorData::new(seg.clone(), [2, config.segment_len]), device);
        let (logits, next) = model.forward(t, memory, &[]);
        memory = next;
        out.extend(values(logits));
    }
    out
}

#[test]
fn model_outputs_match_flex_on_every_backend() {
    let flex = Device::flex();
    for memory in [MemoryKind::Linear, MemoryKind::Delta, MemoryKind::None, MemoryKind::Xl] {
        let config = small(memory);
        let model = config.init(&flex);
        let tokens: Vec<Vec<i64>> = (0..3)
            .map(|s| (0..2 * config.segment_len).map(|i| ((i * 13 + s * 7 + i / 3) % config.vocab_size) as i64).collect())
            .collect();
        let reference = run(&model, &config, &tokens, &flex);
        for (name, device) in backends() {
            let moved = model.clone().to_device(&device);
            let e = rel_err(&run(&moved, &config, &tokens, &device), &reference);
            eprintln!("{name} {memory:?}: logits within {e:.1e} of flex");
            assert!(e <= 1e-4, "{name} {memory:?}: logits differ from flex by {e}");
        }
    }
}

#[test]
fn causality_holds_on_every_backend() {
    for (name, device) in backends() {
        let config = small(MemoryKind::Linear);
        let model = config.init(&device);
        let n = config.segment_len;
        let a = token_ids(1, 2 * n, config.vocab_size, 0, &device);
        let mut perturbed = values(a.clone().float());
        perturbed[n + 3] = (perturbed[n + 3] + 1.0) % config.vocab_size as f64;
        let b = Tensor::<1>::from_floats(perturbed.iter().map(|&v| v as f32).collect::<Vec<_>>().as_slice(), &device)
            .reshape([1, 2 * n])
            .int();
        let logits = |t: Tensor<2, Int>| {
            let mut memory = MemoryState::empty(&config, 1, &device);
            let mut all = Vec::new();
            for s in 0..2 {
                let (l, next) = model.forward(t.clone().slice([0..1, s * n..(s + 1) * n]), memory, &[]);
                memory = next;
                all.extend(values(l));
            }
            all
        };
        let (x, y) = (logits(a), logits(b));
        let v = config.vocab_size;
        // Flex computes both runs bit for bit alike; with kernel fusion a GPU backend may group
        // (and so round) the two runs' operations differently, by about 1e-6. A causality leak
        // moves logits by far more than the bound there.
        let bound = if name == "flex" { 1e-6 } else { 1e-4 };
        for pos in 0..2 * n {
            let d = x[pos * v..(pos + 1) * v].iter().zip(&y[pos * v..(pos + 1) * v]).fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
            if pos < n + 3 {
                assert!(d <= bound, "{name}: position {pos} changed by {d} before the perturbed token");
            } else {
                assert!(d > 1e-6, "{name}: position {pos} unchanged after the perturbed token");
            }
        }
    }
}

#[test]
fn memory_carries_gradient_on_every_backend() {
    for (name, device) in backends() {
        let device = device.autodiff();
        let config = small(MemoryKind::Linear);
        let model = config.init(&device);
        let (n, d) = (config.segment_len, config.d_model);
        let grad = |detach: bool| {
            let x1 = Tensor::<3>::from_data(TensorData::new((0..n * d).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect::<Vec<_>>(), [1, n, d]), &device)
                .require_grad();
            let x2 = Tensor::<3>::from_data(TensorData::new((0..n * d).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect::<Vec<_>>(), [1, n, d]), &device);
            let (_, memory) = model.forward_embedded(x1.clone(), MemoryState::empty(&config, 1, &device), &[]);
            let memory = if detach { memory.detach() } else { memory };
            let (h, _) = model.forward_embedded(x2, memory, &[]);
            let grads = h.powi_scalar(2).sum().backward();
            x1.grad(&grads).map_or(0.0, |g| g.abs().sum().into_scalar::<f64>())
        };
        assert!(grad(false) > 1e-8, "{name}: no gradient through the memory");
        assert_eq!(grad(true), 0.0, "{name}: gradient through a detached memory");
    }
}

#[test]
fn a_few_training_steps_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::prepared(dir.path());
    for (name, device) in backends() {
        let run = dir.path().join(format!("run-{name}"));
        let mut cfg = common::config(&data, &run, 12);
        cfg.eval.every = 0;
        let options = RunOptions { run_dir: run.clone(), device, replicas: Vec::new(), max_steps_this_run: None, poison_steps: None };
        let summary = train(cfg, Start::Fresh, options).unwrap();
        assert!(summary.losses.iter().all(|l| l.is_finite()), "{name}: {:?}", summary.losses);
        assert!(summary.losses[11] < summary.losses[0], "{name}: loss did not fall: {:?}", summary.losses);
    }
}

#[test]
fn bf16_training_on_every_backend_that_has_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::prepared(dir.path());
    for (name, device) in backends() {
        if !device.supports_dtype(burn::tensor::DType::BF16) {
            eprintln!("skipping bf16 on {name}: the device has no bf16");
            continue;
        }
        let run = dir.path().join(format!("bf16-{name}"));
        let mut cfg = common::config(&data, &run, 12);
        cfg.eval.every = 0;
        cfg.train.precision = infini_train::config::Precision::Bf16;
        let options = RunOptions { run_dir: run.clone(), device, replicas: Vec::new(), max_steps_this_run: None, poison_steps: None };
        let summary = train(cfg, Start::Fresh, options).unwrap();
        assert!(summary.losses.iter().all(|l| l.is_finite()), "{name}: {:?}", summary.losses);
        assert!(summary.losses[11] < summary.losses[0], "{name}: bf16 loss did not fall: {:?}", summary.losses);
    }
}

/// The local path's attention (`burn::tensor::module::attention`, causal: fused on the GPU
/// backends) against attention written out (scores, causal mask, softmax, values): the same
/// values and the same gradients for Q, K and V, on every backend.
#[test]
fn fused_causal_attention_equals_explicit_attention_on_every_backend() {
    use burn::tensor::activation::softmax;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Bool, Distribution};
    for (name, device) in backends() {
        let device = device.autodiff();
        let (b, h, n, d) = (2, 3, 12, 8);
        let q0 = Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 1.0), &device);
        let k0 = Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 1.0), &device);
        let v0 = Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<4>::random([b, h, n, d], Distribution::Normal(0.0, 1.0), &device);
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
            let g = |t: &Tensor<4>| values(t.grad(&grads).expect("gradient"));
            (values(out), g(&q), g(&k), g(&v))
        };
        let (fused, explicit) = (run(true), run(false));
        for (what, a, e) in [("output", &fused.0, &explicit.0), ("dQ", &fused.1, &explicit.1), ("dK", &fused.2, &explicit.2), ("dV", &fused.3, &explicit.3)] {
            let err = rel_err(a, e);
            assert!(err < 1e-4, "{name}: fused attention {what} differs from the explicit one by {err:e}");
        }
    }
}
