//! A short run of scripts/fault-test.sh: kill -9 during prepare and training, resume, and check
//! that nothing is corrupt and the loss curve is bit-identical.

use std::process::Command;

#[test]
fn killed_runs_resume_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/fault-test.sh"))
        .arg("6")
        .arg(dir.path())
        .env("INFINI", env!("CARGO_BIN_EXE_infini"))
        .env("STEPS", "300")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(" 0 corrupt, curves identical"), "{stdout}{stderr}");
}
