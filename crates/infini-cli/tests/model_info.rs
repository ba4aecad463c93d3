//! `infini model-info` end to end, through the built binary.

use std::process::Command;

fn infini(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_infini"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("run infini");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn paper_config_reports_the_papers_memory_size() {
    let (ok, stdout, _) = infini(&["model-info", "--config", "configs/paper-pg19.toml", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["memory_floats_per_sequence"], 1_585_152);
    assert!(v["parameters"].as_u64().unwrap() > 200_000_000);
}

#[test]
fn every_shipped_config_is_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")).unwrap() {
        let path = entry.unwrap().path();
        let (ok, _, stderr) = infini(&["model-info", "--config", path.to_str().unwrap()]);
        assert!(ok, "{}: {stderr}", path.display());
    }
}

#[test]
fn bad_config_is_a_one_line_error() {
    let dir = std::env::temp_dir().join(format!("infini-model-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[model]\nvocab_size = 10\nd_model = 64\nn_layers = 2\nn_heads = 4\nffn_hidden = 8\nbogus = 1\n").unwrap();
    for args in [
        vec!["model-info", "--config", bad.to_str().unwrap()],
        vec!["model-info", "--config", "/nonexistent/x.toml"],
    ] {
        let (ok, _, stderr) = infini(&args);
        assert!(!ok);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
    }
}
