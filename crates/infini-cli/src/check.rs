//! `infini check`: the backend self-checks of `infini_train::check`, for a machine without a
//! Rust toolchain (scripts/gpu-check.sh ships this binary to a GPU machine).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use infini_train::check;

/// Arguments of `infini check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Backends to check (comma-separated): flex, wgpu, cuda; `all` for every one compiled in
    /// that has a device here (the others are listed as skipped).
    #[arg(long, default_value = "all")]
    pub backend: String,
    /// Also write the outcomes to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let all = args.backend == "all";
    let names: Vec<String> = if all {
        infini_train::backend::available().iter().map(|s| s.to_string()).collect()
    } else {
        args.backend.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    let mut report = Vec::new();
    let mut failed = 0;
    for name in &names {
        let device = match infini_train::backend::device(name) {
            Ok(device) => device,
            // `all` checks what this machine can run; a backend named on purpose must start.
            Err(e) if all => {
                println!("{name}: skipped ({e})");
                continue;
            }
            Err(e) => return Err(anyhow!(e)),
        };
        println!("{name}:");
        for (what, f) in check::ALL {
            let outcome = check::run(what, f, &device);
            println!("  {} {:<44} {}", if outcome.passed { "ok  " } else { "FAIL" }, outcome.check, outcome.detail);
            failed += usize::from(!outcome.passed);
            report.push(serde_json::json!({ "backend": name, "check": outcome.check, "passed": outcome.passed, "detail": outcome.detail }));
        }
    }
    if let Some(path) = args.json {
        infini_data::fsutil::atomic_write(&path, format!("{}\n", serde_json::to_string_pretty(&report)?).as_bytes())?;
    }
    if failed > 0 {
        bail!("{failed} check(s) failed (see FAIL above)");
    }
    Ok(())
}
