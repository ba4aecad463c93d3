//! `infini check`, the backend self-checks that scripts/gpu-check.sh runs on a GPU machine.

mod common;
use common::*;

#[test]
fn check_passes_on_flex_and_writes_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("check.json");
    let r = infini(&["check", "--backend", "flex", "--json", json.to_str().unwrap()]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let outcomes = v.as_array().unwrap();
    assert_eq!(outcomes.len(), 6, "{v}");
    assert!(outcomes.iter().all(|o| o["passed"] == true && o["backend"] == "flex"), "{v}");
    assert_eq!(r.stdout.matches("ok  ").count(), 6, "{}", r.stdout);
}

#[test]
fn check_of_an_unknown_or_missing_backend_is_a_one_line_error() {
    assert_one_line_error(&infini(&["check", "--backend", "tpu"]), "unknown backend `tpu`");
    if !cfg!(feature = "cuda") {
        assert_one_line_error(&infini(&["check", "--backend", "cuda"]), "built without the cuda backend");
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_infini"))
        .args(["check", "--backend", "flex"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_BACKTRACE")
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("internal error") && !stderr.contains("panicked"), "{stderr}");
}
