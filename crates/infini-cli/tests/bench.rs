//! `infini bench train|matmul` end to end, through the built binary (tiny sizes: these check the
//! output, not the speed).

mod common;
use common::*;

#[test]
fn bench_train_reports_throughput_and_a_falling_loss() {
    let dir = std::env::temp_dir().join(format!("infini-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("train.json");
    let r = infini(&[
        "bench", "train", "--config", "configs/tiny.toml", "--set", "data.batch_size=1", "--set", "data.seq_len=256",
        "--steps", "3", "--warmup", "1", "--json", out.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["tokens_per_step"], 256);
    assert_eq!(v["step_s"]["all"].as_array().unwrap().len(), 3);
    let tps = &v["tokens_per_s"];
    let (min, median, max) = (tps["min"].as_f64().unwrap(), tps["median"].as_f64().unwrap(), tps["max"].as_f64().unwrap());
    assert!(0.0 < min && min <= median && median <= max, "{tps}");
    assert!(v["gflop_per_s"].as_f64().unwrap() > 0.0 && v["peak_rss_mib"].as_f64().unwrap() > 0.0);
    // The same example every step: the updates must lower its loss.
    let losses: Vec<f64> = v["losses"].as_array().unwrap().iter().map(|l| l.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 4);
    assert!(losses[3] < losses[0], "loss did not fall: {losses:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_train_rejects_zero_steps_and_unknown_keys() {
    assert_one_line_error(&infini(&["bench", "train", "--config", "configs/tiny.toml", "--steps", "0"]), "--steps");
    assert_one_line_error(&infini(&["bench", "train", "--config", "configs/tiny.toml", "--set", "model.bogus=1"]), "bogus");
}

#[test]
fn bench_train_reports_mfu_against_a_given_peak() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("train.json");
    let r = infini(&[
        "bench", "train", "--config", "configs/tiny.toml", "--set", "data.batch_size=1", "--set", "data.seq_len=256",
        "--steps", "1", "--warmup", "0", "--peak-tflops", "0.5", "--json", out.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // MFU = model FLOP/s over the peak.
    let (gflops, mfu) = (v["gflop_per_s"].as_f64().unwrap(), v["mfu"].as_f64().unwrap());
    assert!((mfu - gflops / 500.0).abs() <= 1e-9 * mfu.max(1.0), "{v}");
    assert!(r.stderr.contains("MFU"), "{}", r.stderr);
    assert_one_line_error(&infini(&["bench", "train", "--config", "configs/tiny.toml", "--peak-tflops", "0"]), "--peak-tflops");
}

#[test]
fn bench_matmul_reports_every_shape() {
    let r = infini(&["bench", "matmul", "--sizes", "64,128", "--head", "64x32x100", "--repeats", "1"]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let shapes = v["matmul"].as_array().unwrap();
    assert_eq!(shapes.len(), 5);
    assert!(shapes.iter().all(|s| s["gflop_per_s"].as_f64().unwrap() > 0.0));
}

/// `train.checkpointing` keeps one segment's activations instead of a whole window's: on 16
/// segments of full backprop the peak memory of a training step must drop well below the
/// ordinary run's, with the same losses.
#[test]
fn checkpointing_lowers_peak_memory_with_the_same_losses() {
    let dir = std::env::temp_dir().join(format!("infini-bench-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |checkpointing: bool| {
        let out = dir.join(format!("{checkpointing}.json"));
        let r = infini(&[
            "bench", "train", "--config", "configs/tiny.toml", "--set", "data.batch_size=2", "--set", "data.seq_len=2048",
            "--set", "train.tbptt_segments=0", "--set", &format!("train.checkpointing={checkpointing}"),
            "--steps", "1", "--warmup", "1", "--json", out.to_str().unwrap(),
        ]);
        assert!(r.ok, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let losses: Vec<f64> = v["losses"].as_array().unwrap().iter().map(|l| l.as_f64().unwrap()).collect();
        (v["peak_rss_mib"].as_f64().unwrap(), losses)
    };
    let (plain_mib, plain) = run(false);
    let (ckpt_mib, ckpt) = run(true);
    for (a, b) in plain.iter().zip(&ckpt) {
        assert!((a - b).abs() < 1e-5 * a.abs(), "losses differ: {plain:?} vs {ckpt:?}");
    }
    assert!(ckpt_mib < 0.6 * plain_mib, "peak RSS {ckpt_mib:.0} MiB with checkpointing vs {plain_mib:.0} MiB without");
    std::fs::remove_dir_all(&dir).ok();
}
