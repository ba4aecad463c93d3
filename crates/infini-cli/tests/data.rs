//! `infini tokenizer train`, `data prepare` and `data info` end to end, and their errors.

mod common;
use common::*;

#[test]
fn tokenizer_prepare_info_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    text_corpus(&d.join("corpus"), 10, 500);
    let r = infini_in(d, &["tokenizer", "train", "--dataset", "corpus", "--vocab-size", "300", "--out", "tok.json"]);
    assert!(r.ok, "{}", r.stderr);
    let r = infini_in(d, &["data", "prepare", "--dataset", "corpus", "--tokenizer", "tok.json", "--out", "prep"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("train") && r.stdout.contains("validation"), "{}", r.stdout);
    let r = infini_in(d, &["data", "info", "prep", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["vocab_size"], 300);
    assert_eq!(v["splits"]["train"]["documents"], 6);
    assert_eq!(v["splits"]["train"]["words"], 6 * 500);
}

#[test]
fn bad_data_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    text_corpus(&d.join("corpus"), 5, 200);
    std::fs::write(d.join("bad.json"), "{").unwrap();
    assert_one_line_error(&infini_in(d, &["tokenizer", "train", "--dataset", "nowhere", "--out", "t.json"]), "nowhere");
    assert_one_line_error(
        &infini_in(d, &["tokenizer", "train", "--dataset", "corpus", "--format", "pg20", "--out", "t.json"]),
        "pg20",
    );
    assert_one_line_error(
        &infini_in(d, &["data", "prepare", "--dataset", "corpus", "--tokenizer", "bad.json", "--out", "p"]),
        "bad.json",
    );
    assert_one_line_error(&infini_in(d, &["data", "info", "corpus"]), "not prepared data");
    assert!(!d.join("p").exists(), "a failed prepare must not create its output");
}
