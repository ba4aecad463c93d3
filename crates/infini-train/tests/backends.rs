//! The same checks on every backend compiled in: Flex always; wgpu when built with
//! `--features wgpu` and a Vulkan driver is present (lavapipe on CPU-only machines; `.ci/run`
//! installs it). Set INFINI_REQUIRE_BACKENDS=wgpu to fail instead of skipping a backend without
//! a device.
//!
//! The checks themselves are `infini_train::check`'s, which `infini check --backend B` runs
//! on a machine without a Rust toolchain (scripts/gpu-check.sh).

mod common;

use burn::tensor::Device;
use infini_train::backend::{available, device};
use infini_train::check::{self, Check};
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

/// Runs `check` on every backend, failing with its reason.
fn on_every_backend(check: Check) {
    for (name, device) in backends() {
        match check(&device) {
            Ok(figure) => eprintln!("{name}: {figure}"),
            Err(reason) => panic!("{name}: {reason}"),
        }
    }
}

#[test]
fn model_outputs_match_flex_on_every_backend() {
    on_every_backend(check::logits_match_flex);
}

#[test]
fn causality_holds_on_every_backend() {
    on_every_backend(check::causality);
}

#[test]
fn memory_carries_gradient_on_every_backend() {
    on_every_backend(check::memory_gradient);
}

/// The local path's attention (`burn::tensor::module::attention`, causal: fused on the GPU
/// backends) against attention written out: the same values and Q, K, V gradients.
#[test]
fn fused_causal_attention_equals_explicit_attention_on_every_backend() {
    on_every_backend(check::fused_attention);
}

#[test]
fn bf16_training_on_every_backend_that_has_bf16() {
    on_every_backend(check::training_bf16);
}

/// The whole trainer (data, TBPTT, checkpoints), not only its step as in `infini check`.
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
