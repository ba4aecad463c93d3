//! `infini train` end to end: a run, Ctrl-C, resume, eval and plot through the binary.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Prepares a tiny corpus and writes a run config for it; returns the config path.
fn setup(d: &Path, steps: u64) -> std::path::PathBuf {
    text_corpus(&d.join("corpus"), 10, 3000);
    assert!(infini_in(d, &["tokenizer", "train", "--dataset", "corpus", "--vocab-size", "300", "--out", "tok.json"]).ok);
    assert!(infini_in(d, &["data", "prepare", "--dataset", "corpus", "--tokenizer", "tok.json", "--out", "prep"]).ok);
    let config = format!(
        "[model]\nvocab_size = 300\nd_model = 32\nn_layers = 2\nn_heads = 2\nffn_hidden = 64\nsegment_len = 16\n\n\
         [data]\nprepared = \"prep\"\nbatch_size = 2\nseq_len = 64\n\n\
         [train]\nsteps = {steps}\nlr = 1e-2\nwarmup_steps = 2\n\n\
         [eval]\nevery = 0\nmax_docs = 1\nmax_tokens_per_doc = 100\n\n\
         [checkpoint]\ndir = \"run\"\nevery = 1000\n"
    );
    std::fs::write(d.join("run.toml"), config).unwrap();
    d.join("run.toml")
}

#[test]
fn train_resume_eval_plot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, 6);
    let v = infini_in(d, &["data", "verify", "prep"]);
    assert!(v.ok && v.stdout.contains("hashes and ids ok"), "{}{}", v.stdout, v.stderr);
    let r = infini_in(d, &["train", "--config", "run.toml", "--set", "train.steps=6", "--max-steps", "3"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(d.join("run/checkpoints/step-00000003/model.bpk").exists());
    let r = infini_in(d, &["train", "--config", "run.toml"]);
    assert_one_line_error(&r, "--resume");
    // Silent traps are refused: the saved cursor fixes the streams; a warm-up past the end; a
    // one-segment example whose memory writes could never learn.
    assert_one_line_error(&infini_in(d, &["train", "--resume", "run", "--set", "data.batch_size=1"]), "data.batch_size cannot change");
    assert_one_line_error(&infini_in(d, &["train", "--resume", "run", "--set", "data.seed=9"]), "data.seed cannot change");
    assert_one_line_error(&infini_in(d, &["train", "--config", "run.toml", "--set", "train.warmup_steps=7", "--run-dir", "w"]), "train.warmup_steps");
    for streaming in ["false", "true"] {
        let r = infini_in(d, &["train", "--config", "run.toml", "--set", "data.seq_len=16", "--set", &format!("data.streaming={streaming}"), "--run-dir", "s"]);
        assert_one_line_error(&r, "data.seq_len");
    }
    assert!(!d.join("w").exists() && !d.join("s").exists(), "a refused run leaves no folder");
    let r = infini_in(d, &["train", "--resume", "run"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("validation perplexity"), "{}", r.stdout);
    let lines = std::fs::read_to_string(d.join("run/metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().filter(|l| l.contains("\"train\"")).count(), 6);
    let r = infini_in(d, &["eval", "--checkpoint", "run", "--split", "test", "--json", "ev.json"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(d.join("ev.csv").exists() && d.join("ev.svg").exists());
    // The run recorded its data absolutely: evaluating it from another folder works too.
    let run_path = d.join("run");
    let elsewhere = infini_in(&d.join("corpus"), &["eval", "--checkpoint", run_path.to_str().unwrap(), "--split", "test"]);
    assert!(elsewhere.ok, "{}", elsewhere.stderr);
    assert!(infini_in(d, &["plot", "run"]).ok);
    assert!(d.join("run/curves.svg").exists());
    assert!(infini_in(d, &["generate", "--checkpoint", "run", "--prompt", "the memory", "--max-new-tokens", "5"]).ok);
    assert_one_line_error(&infini_in(d, &["train", "--config", "run.toml", "--backend", "cuda", "--run-dir", "x"]), "cuda");
    assert_one_line_error(&infini_in(d, &["train", "--config", "run.toml", "--set", "model.vocab_size=301", "--run-dir", "y"]), "vocab_size");
}

#[test]
fn ctrl_c_sigterm_and_sighup_save_a_checkpoint_and_exit_130() {
    for signal in ["INT", "TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        setup(d, 100_000);
        let child = Command::new(env!("CARGO_BIN_EXE_infini"))
            .args(["train", "--config", "run.toml"])
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::fs::read_to_string(d.join("run/metrics.jsonl")).map_or(0, |t| t.lines().count()) < 2 {
            assert!(started.elapsed() < Duration::from_secs(120), "training did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        if signal == "INT" {
            // One process per run folder: a second one is refused, naming the holder.
            let second = infini_in(d, &["train", "--resume", "run"]);
            assert_one_line_error(&second, &format!("in use by another `infini train` (pid {})", child.id()));
        }
        assert!(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or("");
        assert!(last.contains("stopped by a signal") && last.contains("--resume"), "SIG{signal}: {stderr}");
        let saved: Vec<_> = std::fs::read_dir(d.join("run/checkpoints")).unwrap().flatten().collect();
        assert!(saved.iter().any(|e| e.file_name().to_string_lossy().starts_with("step-")), "no checkpoint after SIG{signal}");
        let r = infini_in(d, &["train", "--resume", "run", "--max-steps", "1"]);
        assert!(r.ok, "resume after SIG{signal}: {}", r.stderr);
    }
}

#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, 4);
    assert!(infini_in(d, &["train", "--config", "run.toml", "--max-steps", "2"]).ok);
    let before = std::fs::read(d.join("run/checkpoints/step-00000002/model.bpk")).unwrap();
    // 8 KiB per file: enough for configs and metrics, too little for the next model.bpk.
    let out = Command::new("bash")
        .args(["-c", &format!("ulimit -f 8; exec {} train --resume run", env!("CARGO_BIN_EXE_infini"))])
        .current_dir(d)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = stderr.trim_end().lines().last().unwrap_or("");
    assert!(last.starts_with("error: ") && last.contains("checkpoint not saved") && last.contains("intact"), "{stderr}");
    assert_eq!(std::fs::read(d.join("run/checkpoints/step-00000002/model.bpk")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(d.join("run/checkpoints")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.iter().all(|n| n == "step-00000002" || n == "best"), "{leftovers:?}");
    // The intact checkpoint still resumes once there is room again.
    let r = infini_in(d, &["train", "--resume", "run"]);
    assert!(r.ok, "{}", r.stderr);
}
