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
