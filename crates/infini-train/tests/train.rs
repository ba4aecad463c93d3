//! The trainer: exact resume, continual pre-training, learning, TBPTT through the memory,
//! and non-finite steps.

mod common;
use common::{config, prepared};

use std::fs;
use std::path::Path;

use burn::tensor::Device;
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryState, MemoryKind};
use infini_train::backprop::{StepGrads, Window, backprop_example};
use infini_train::{RunConfig, RunOptions, Start, train};

/// Burn's device RNG (initialisation, dropout) is global to the process, so runs that must be
/// reproducible cannot overlap with other runs of the same test binary: each test holds this.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn options(run: &Path, max_steps: Option<u64>) -> RunOptions {
    RunOptions { run_dir: run.to_path_buf(), device: Device::flex(), replicas: Vec::new(), max_steps_this_run: max_steps, poison_steps: None }
}

#[test]
fn resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let _serial = serial();
    resume_matches(false);
}

#[test]
fn resumed_streaming_run_restores_the_carried_memory() {
    let _serial = serial();
    resume_matches(true);
}

#[test]
fn resumed_streaming_xl_baseline_restores_its_cache() {
    let _serial = serial();
    resume_matches_with(true, MemoryKind::Xl, 1.0);
}

#[test]
fn memory_dilution_resumes_bit_for_bit_and_changes_training() {
    let _serial = serial();
    let diluted = resume_matches_with(false, MemoryKind::Linear, 8.0);
    let plain = resume_matches_with(false, MemoryKind::Linear, 1.0);
    assert_ne!(diluted, plain, "train.write_repeat_max had no effect");
}

fn resume_matches(streaming: bool) {
    resume_matches_with(streaming, MemoryKind::Linear, 1.0);
}

/// Trains 20 steps straight and 10 + 10 with a resume between; returns the straight losses.
fn resume_matches_with(streaming: bool, memory: MemoryKind, write_repeat_max: f64) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let cfg = |run: &Path| {
        let mut c = config(&data, run, 20);
        c.data.streaming = streaming;
        c.model.memory = memory;
        c.train.write_repeat_max = write_repeat_max;
        c
    };
    let straight_dir = dir.path().join("straight");
    let straight = train(cfg(&straight_dir), Start::Fresh, options(&straight_dir, None)).unwrap();
    assert_eq!(straight.losses.len(), 20);

    let split_dir = dir.path().join("split");
    let first = train(cfg(&split_dir), Start::Fresh, options(&split_dir, Some(10))).unwrap();
    assert_eq!(first.step, 10);
    assert_eq!(split_dir.join("checkpoints/step-00000010/memory.bin").exists(), streaming);
    let second = train(cfg(&split_dir), Start::Resume, options(&split_dir, None)).unwrap();
    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).copied().collect();
    let (a, b): (Vec<u64>, Vec<u64>) = (straight.losses.iter().map(|l| l.to_bits()).collect(), resumed.iter().map(|l| l.to_bits()).collect());
    assert_eq!(a, b, "losses differ:\n{:?}\n{:?}", straight.losses, resumed);
    let metrics = |d: &Path| -> Vec<String> {
        fs::read_to_string(d.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"train\"")).map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {}", v["step"], v["loss"])
        }).collect()
    };
    assert_eq!(metrics(&straight_dir), metrics(&split_dir), "metrics.jsonl curves differ");
    assert!(split_dir.join("checkpoints/best/model.bpk").exists());
    assert!(infini_train::checkpoint::list(&split_dir).len() <= 2, "keep_last = 2");

    let e = train(cfg(&split_dir), Start::Fresh, options(&split_dir, None)).unwrap_err();
    assert!(e.contains("--resume"), "{e}");
    straight.losses
}

#[test]
fn continual_pretraining_at_longer_length_and_shape_checks() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let base = dir.path().join("base");
    train(config(&data, &base, 4), Start::Fresh, options(&base, None)).unwrap();

    let long = dir.path().join("long");
    let mut cfg = config(&data, &long, 3);
    cfg.data.seq_len = 128;
    cfg.model.segment_len = 32;
    cfg.model.memory = MemoryKind::Delta;
    let summary = train(cfg, Start::InitFrom(base.clone()), options(&long, None)).unwrap();
    assert_eq!(summary.step, 3);
    assert!(summary.losses.iter().all(|l| l.is_finite()));

    let other = dir.path().join("other");
    let mut cfg = config(&data, &other, 3);
    cfg.model.d_model = 48;
    let e = train(cfg, Start::InitFrom(base), options(&other, None)).unwrap_err();
    assert!(e.contains("d_model 32 → 48"), "{e}");
}

#[test]
fn loss_falls_far_below_its_start_on_repetitive_text() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let run = dir.path().join("run");
    let mut cfg = config(&data, &run, 60);
    cfg.eval.every = 0;
    let summary = train(cfg, Start::Fresh, options(&run, None)).unwrap();
    let (start, end) = (summary.losses[0], summary.losses[summary.losses.len() - 1]);
    assert!(start > 5.0, "initial loss should be near ln(300) = 5.7, got {start}");
    assert!(end < 0.3 * start, "loss fell only from {start} to {end}");
    assert!(summary.validation.unwrap().perplexity < 10.0);
}

/// A segment of one stream: every input `token`, targets `token`, with or without loss.
fn segment(token: u32, n: usize, mask: f32, reset: bool) -> SegmentBatch {
    SegmentBatch {
        batch: 1,
        segment_len: n,
        inputs: vec![token; n],
        targets: (0..n as u32).map(|i| 20 + i % 7).collect(),
        mask: vec![mask; n],
        reset: vec![reset],
        docs: vec![Some(0)],
    }
}

/// Gradient on the embedding row of a token seen only in segment 1 (which has no loss).
fn embedding_grad_of_first_segment_token(window: usize) -> f64 {
    let device = Device::flex().autodiff();
    let mut config = infini_model::ModelConfig::tiny(64);
    config.tie_embeddings = false; // else the output head reaches every embedding row
    config.segment_len = 8;
    let model: InfiniLm = config.init(&device);
    let example = [segment(5, 8, 0.0, true), segment(9, 8, 1.0, false)];
    let mut acc = StepGrads::new();
    let memory = MemoryState::empty(&config, 1, &device);
    backprop_example(&model, &example, memory, Window { segments: window, recompute: false, repeat: None }, 1.0 / 8.0, &device, &mut acc);
    let grads = acc.grads(&model);
    let g = grads.get::<2>(model.embedding.weight.id).expect("embedding gradient");
    g.slice([5..6, 0..config.d_model]).abs().sum().into_scalar::<f64>()
}

#[test]
fn tbptt_window_carries_gradient_into_earlier_memory_writes() {
    let _serial = serial();
    let across = embedding_grad_of_first_segment_token(2);
    assert!(across > 1e-8, "gradient through the memory is {across}");
    let detached = embedding_grad_of_first_segment_token(1);
    assert_eq!(detached, 0.0, "with a window of 1 the memory is detached between segments");
}

#[test]
fn non_finite_steps_are_skipped_counted_and_eventually_stop_the_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let run = dir.path().join("run");
    let mut opts = options(&run, None);
    opts.poison_steps = Some(5..6);
    let summary = train(config(&data, &run, 8), Start::Fresh, opts).unwrap();
    assert_eq!(summary.step, 8);
    assert!(summary.losses[5].is_nan() && summary.losses[7].is_finite());
    let (_, state) = infini_train::checkpoint::read_meta(&summary.checkpoint.unwrap()).unwrap();
    assert_eq!(state.skipped_steps, 1);

    let run = dir.path().join("run2");
    let mut opts = options(&run, None);
    opts.poison_steps = Some(5..100);
    let e = train(config(&data, &run, 20), Start::Fresh, opts).unwrap_err();
    let last = infini_train::checkpoint::list(&run).pop().unwrap().1;
    assert!(e.contains("consecutive non-finite") && e.contains(&last.display().to_string()), "{e}");
    let cfg = config(&data, &run, 20);
    let model = infini_train::checkpoint::load_model(&last, cfg.model.init(&Device::flex())).unwrap();
    let weights = model.embedding.weight.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    assert!(weights.iter().all(|w| w.is_finite()), "a saved checkpoint holds non-finite weights");
}

#[test]
fn a_skipped_streaming_step_keeps_the_carried_memory() {
    let _serial = serial();
    // With a learning rate too small to change any f32 weight, a skipped step and an applied one
    // leave the same weights, so the runs differ only in what a skipped step does to the memory
    // carried into the next example: kept, every later loss is bit-identical to the clean run's.
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let run_with = |name: &str, poison: Option<std::ops::Range<u64>>| {
        let run = dir.path().join(name);
        let mut cfg = config(&data, &run, 8);
        (cfg.data.streaming, cfg.train.lr, cfg.train.grad_accum) = (true, 1e-30, 1);
        let mut opts = options(&run, None);
        opts.poison_steps = poison;
        train(cfg, Start::Fresh, opts).unwrap().losses
    };
    let clean = run_with("clean", None);
    let skipped = run_with("skipped", Some(3..4));
    assert!(skipped[3].is_nan());
    for step in (0..8).filter(|&s| s != 3) {
        assert_eq!(skipped[step].to_bits(), clean[step].to_bits(), "step {step}: {skipped:?} vs {clean:?}");
    }
}

#[test]
fn config_overrides_and_errors() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Path::new("data/x"), &dir.path().join("r"), 5);
    let path = dir.path().join("r.toml");
    let c = RunConfig::load(&path, &["train.steps=7".into(), "data.streaming=true".into(), "checkpoint.dir=elsewhere".into()]).unwrap();
    assert_eq!((c.train.steps, c.data.streaming, c.checkpoint.dir.to_str().unwrap()), (7, true, "elsewhere"));
    assert_eq!(c.model, cfg.model);
    let e = RunConfig::load(&path, &["train.stepz=7".into()]).unwrap_err();
    assert!(e.contains("stepz"), "{e}");
    let e = RunConfig::load(&path, &["train.tbptt_segments=1".into()]).unwrap_err();
    assert!(e.contains("train.tbptt_segments") && e.contains("never get a gradient"), "{e}");
    let e = RunConfig::load(&path, &["data.seq_len=70".into()]).unwrap_err();
    assert!(e.contains("data.seq_len") && e.contains("multiple"), "{e}");
    let e = RunConfig::load(&path, &["train.write_repeat_max=0.5".into()]).unwrap_err();
    assert!(e.contains("train.write_repeat_max") && e.contains("≥ 1"), "{e}");
}

#[test]
fn every_shipped_config_is_a_valid_run_config() {
    let _serial = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    assert!(n >= 5);
}

#[test]
fn adafactor_trains_too() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let run = dir.path().join("run");
    let mut cfg = config(&data, &run, 40);
    cfg.train.optimizer = infini_train::config::OptimizerKind::Adafactor;
    cfg.train.weight_decay = 0.0;
    cfg.eval.every = 0;
    let summary = train(cfg, Start::Fresh, options(&run, None)).unwrap();
    let (start, end) = (summary.losses[0], summary.losses[summary.losses.len() - 1]);
    assert!(end < 0.6 * start, "Adafactor: loss fell only from {start} to {end}");
}

#[test]
fn bf16_mixed_precision_trains() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let run = dir.path().join("run");
    let mut cfg = config(&data, &run, 40);
    cfg.train.precision = infini_train::config::Precision::Bf16;
    cfg.eval.every = 0;
    let summary = train(cfg, Start::Fresh, options(&run, None)).unwrap();
    let (start, end) = (summary.losses[0], summary.losses[summary.losses.len() - 1]);
    assert!(end < 0.6 * start, "bf16: loss fell only from {start} to {end}");
    // Weights stay f32 in the checkpoint.
    let (_, state) = infini_train::checkpoint::read_meta(&summary.checkpoint.unwrap()).unwrap();
    assert_eq!(state.step, 40);
}

#[test]
fn data_parallel_over_two_devices_matches_one_device() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let cfg = |run: &Path| {
        let mut c = config(&data, run, 8);
        c.eval.every = 0;
        c
    };
    // Plain, then with memory dilution (each stream's write weights drawn the same whichever
    // device has the stream).
    for write_repeat_max in [1.0, 8.0] {
        let train_on = |devices: usize| {
            let run = dir.path().join(format!("{devices}-{write_repeat_max}"));
            let mut c = cfg(&run);
            c.train.write_repeat_max = write_repeat_max;
            let mut o = options(&run, None);
            o.replicas = vec![Device::flex(); devices - 1];
            train(c, Start::Fresh, o).unwrap().losses
        };
        let (one, two) = (train_on(1), train_on(2));
        for (step, (a, b)) in one.iter().zip(&two).enumerate() {
            assert!((a - b).abs() <= 1e-4 * a.abs(), "write_repeat_max {write_repeat_max}, step {step}: one device {a}, two devices {b}");
        }
        assert!(one[7] < one[0]);
    }

    let mut odd = cfg(&dir.path().join("odd"));
    odd.data.batch_size = 3;
    let mut odd_options = options(&dir.path().join("odd"), None);
    odd_options.replicas = vec![Device::flex()];
    let e = train(odd, Start::Fresh, odd_options).unwrap_err();
    assert!(e.contains("multiple of the number of devices"), "{e}");
}
