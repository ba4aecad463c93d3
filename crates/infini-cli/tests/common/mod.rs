//! Running the built `infini` binary from tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Output of one `infini` run.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `infini ARGS` in `dir`.
pub fn infini_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_infini"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run infini");
    Run { ok: out.status.success(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

/// Runs `infini ARGS` at the repository root.
pub fn infini(args: &[&str]) -> Run {
    infini_in(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")), args)
}

/// Asserts a failed run whose error is one line mentioning `needle`, with no panic.
pub fn assert_one_line_error(run: &Run, needle: &str) {
    assert!(!run.ok, "expected failure, got success: {}", run.stdout);
    let err = run.stderr.trim_end();
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error: ") && last.contains(needle), "error should mention {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
}

/// Writes a small text-folder corpus with train/validation/test folders.
pub fn text_corpus(root: &Path, books: usize, words: usize) {
    let vocab = ["the", "memory", "of", "a", "long", "book", "attention", "segment", "reads", "and", "writes"];
    for i in 0..books {
        let split = ["train", "train", "train", "validation", "test"][i % 5];
        let text: Vec<&str> = (0..words).map(|w| vocab[(w * 7 + i * 3 + w / 5) % vocab.len()]).collect();
        let path = root.join(split).join(format!("book{i:03}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text.join(" ") + ".\n").unwrap();
    }
}
