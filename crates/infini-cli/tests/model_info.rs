//! `infini model-info` end to end, through the built binary.

mod common;
use common::*;

#[test]
fn paper_config_reports_the_papers_memory_size() {
    let r = infini(&["model-info", "--config", "configs/paper-pg19.toml", "--json"]);
    assert!(r.ok);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["memory_floats_per_sequence"], 1_585_152);
    assert!(v["parameters"].as_u64().unwrap() > 200_000_000);
}

#[test]
fn every_shipped_config_is_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")).unwrap() {
        let path = entry.unwrap().path();
        let r = infini(&["model-info", "--config", path.to_str().unwrap()]);
        assert!(r.ok, "{}: {}", path.display(), r.stderr);
    }
}

#[test]
fn bad_config_is_a_one_line_error() {
    let dir = std::env::temp_dir().join(format!("infini-model-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[model]\nvocab_size = 10\nd_model = 64\nn_layers = 2\nn_heads = 4\nffn_hidden = 8\nbogus = 1\n").unwrap();
    assert_one_line_error(&infini(&["model-info", "--config", bad.to_str().unwrap()]), "bogus");
    assert_one_line_error(&infini(&["model-info", "--config", "/nonexistent/x.toml"]), "/nonexistent/x.toml");
}

fn estimate(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["model-info", "--estimate-memory", "--json"];
    all.extend_from_slice(args);
    let r = infini(&all);
    assert!(r.ok, "{}", r.stderr);
    serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["training_memory"]["bytes"].clone()
}

#[test]
fn paper_config_needs_checkpointing_on_one_gpu() {
    let e = estimate(&["--config", "configs/paper-pg19.toml"]);
    let gb = |k: &str| e[k].as_f64().unwrap() / 1e9;
    // Full backprop through 16 segments of 2048 tokens keeps the activations of all 16.
    assert!(gb("gpu_total") > 80.0, "paper setup without checkpointing: {} GB", gb("gpu_total"));
    assert!(gb("gpu_total_checkpointed") < 0.5 * 80.0, "with checkpointing: {} GB", gb("gpu_total_checkpointed"));
    // The CPU path keeps fewer activations than the GPUs' tensor ops.
    assert!(gb("total") < gb("gpu_total") && gb("total_checkpointed") < gb("gpu_total_checkpointed"));
    let text = infini(&["model-info", "--config", "configs/paper-pg19.toml", "--estimate-memory"]);
    assert!(text.stdout.contains("a 80 GB GPU: does not fit as configured, fits with checkpointing"), "{}", text.stdout);
    // A bigger batch scales the activations.
    let e4 = estimate(&["--config", "configs/paper-pg19.toml", "--batch-size", "4"]);
    let ratio = e4["activations"].as_f64().unwrap() / e["activations"].as_f64().unwrap();
    assert!((ratio - 4.0).abs() < 1e-9, "{ratio}");
}

/// The estimate against the peak RSS `bench train` measures for the same config (±25%), with
/// and without checkpointing.
#[test]
fn memory_estimate_is_within_a_quarter_of_measured_peak_rss() {
    let dir = std::env::temp_dir().join(format!("infini-estimate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for checkpointing in [false, true] {
        let set = format!("train.checkpointing={checkpointing}");
        let out = dir.join("bench.json");
        let r = infini(&["bench", "train", "--config", "configs/tiny.toml", "--set", &set, "--steps", "1", "--warmup", "1", "--json", out.to_str().unwrap()]);
        assert!(r.ok, "{}", r.stderr);
        let measured = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&out).unwrap()).unwrap()["peak_rss_mib"].as_f64().unwrap();
        let e = estimate(&["--config", "configs/tiny.toml"]);
        let key = if checkpointing { "total_checkpointed" } else { "total" };
        let estimated = e[key].as_f64().unwrap() / (1u64 << 20) as f64;
        assert!((estimated / measured - 1.0).abs() < 0.25, "checkpointing={checkpointing}: estimated {estimated:.0} MiB, measured {measured:.0} MiB");
    }
    std::fs::remove_dir_all(&dir).ok();
}
