//! `infini train`: wiring to infini-train.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use infini_train::{RunConfig, RunOptions, Start, backend, train};

/// Arguments of `infini train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Run config (TOML with [model], [data], [train], [eval], [checkpoint]); e.g. configs/tiny.toml.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. --set train.steps=20 --set data.batch_size=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run folder (default: checkpoint.dir of the config).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in this folder exactly where its latest checkpoint stopped.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "init_from", "run_dir"])]
    pub resume: Option<PathBuf>,
    /// Start from the weights of this checkpoint (or run folder) with a new config: continual
    /// pre-training, e.g. at a longer data.seq_len.
    #[arg(long, value_name = "CHECKPOINT")]
    pub init_from: Option<PathBuf>,
    /// Compute backend: flex (CPU), wgpu or cuda (the last two need the matching cargo feature).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Data parallelism over this many devices of the backend (cuda: GPUs 0..N); each takes an
    /// equal share of data.batch_size streams.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Stop after this many steps of this invocation (the schedule still spans train.steps).
    #[arg(long, hide = true)]
    pub max_steps: Option<u64>,
    /// Testing aid: make the loss of steps FROM..TO non-finite (e.g. 3..5).
    #[arg(long, hide = true, env = "INFINI_POISON_STEPS")]
    pub poison_steps: Option<String>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut devices = backend::devices(&args.backend, args.devices).map_err(|e| anyhow!(e))?;
    let device = devices.remove(0);
    let (config, start, run_dir) = if let Some(run_dir) = args.resume {
        let path = run_dir.join("config.toml");
        if !path.exists() {
            bail!("{} is not a run folder (no config.toml): pass the folder given to --run-dir or checkpoint.dir", run_dir.display());
        }
        (RunConfig::load(&path, &args.overrides).map_err(|e| anyhow!(e))?, Start::Resume, run_dir)
    } else {
        let path = args.config.expect("clap requires --config without --resume");
        let config = RunConfig::load(&path, &args.overrides).map_err(|e| anyhow!(e))?;
        let run_dir = args.run_dir.unwrap_or_else(|| config.checkpoint.dir.clone());
        let start = match args.init_from {
            Some(ckpt) => Start::InitFrom(ckpt),
            None => Start::Fresh,
        };
        (config, start, run_dir)
    };
    let poison_steps = match args.poison_steps {
        Some(r) => {
            let (a, b) = r.split_once("..").ok_or_else(|| anyhow!("--poison-steps expects FROM..TO"))?;
            Some(a.parse::<u64>()?..b.parse::<u64>()?)
        }
        None => None,
    };
    let options = RunOptions { run_dir, device, replicas: devices, max_steps_this_run: args.max_steps, poison_steps };
    let run_dir = options.run_dir.clone();
    let summary = train(config, start, options).map_err(|e| anyhow!(e))?;
    if summary.interrupted {
        // 130 = 128 + SIGINT, as shells report a Ctrl-C; also for SIGTERM and SIGHUP.
        eprintln!(
            "stopped by a signal at step {}: checkpoint saved; continue with `infini train --resume {}`",
            summary.step,
            run_dir.display()
        );
        std::process::exit(130);
    }
    if let Some(v) = summary.validation {
        println!("validation perplexity {:.2} (loss {:.4}) at step {}", v.perplexity, v.loss, summary.step);
    }
    Ok(())
}
