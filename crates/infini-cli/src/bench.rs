//! `infini bench …`: throughput measurements with JSON output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use infini_data::shards::PrepareOptions;
use infini_data::{PreparedData, SegmentStream, Split, Tokenizer, open_dataset, prepare};
use serde_json::json;

use crate::data::DatasetArgs;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Evaluation tokens/s and peak RSS on one synthetic document per length, each in a fresh process.
    Eval {
        /// Model config (random weights) ...
        #[arg(long, required_unless_present = "checkpoint")]
        config: Option<PathBuf>,
        /// ... or a checkpoint.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Document lengths (K = 1024, M = 1024²).
        #[arg(long, default_value = "8K,64K,1M")]
        lengths: String,
        /// Also write the results to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Compute backend: flex, wgpu or cuda.
        #[arg(long, default_value = "flex")]
        backend: String,
    },
    /// One length of `bench eval` (run by it in a child process).
    #[command(hide = true)]
    EvalOne {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        length: usize,
        #[arg(long, default_value = "flex")]
        backend: String,
    },
    /// Tokens/s of `data prepare` (into a temporary folder) and of the segment loader.
    Data {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Tokenizer for the preparation.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Parallel streams of the loader.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per segment.
        #[arg(long, default_value_t = 2048)]
        segment_len: usize,
        /// Seconds to run the loader.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Also write the results to this JSON file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Peak resident set size of this process in MiB (Linux: VmHWM), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The model to benchmark: a checkpoint's, or a freshly initialised one from a config.
fn bench_model(config: &Option<PathBuf>, checkpoint: &Option<PathBuf>, device: &burn::tensor::Device) -> Result<(infini_model::InfiniLm, infini_model::ModelConfig)> {
    match (checkpoint, config) {
        (Some(ckpt), _) => {
            let (model, config, _, _) = infini_train::checkpoint::load_for_inference(ckpt, device).map_err(|e| anyhow!(e))?;
            Ok((model, config.model))
        }
        (None, Some(path)) => {
            #[derive(serde::Deserialize)]
            struct ModelSection {
                model: infini_model::ModelConfig,
            }
            let m = infini_model::toml_file::read::<ModelSection>(path).map_err(|e| anyhow!(e))?.model;
            m.validate().map_err(|e| anyhow!("{}: {e}", path.display()))?;
            device.seed(0);
            Ok((m.init(device), m))
        }
        (None, None) => Err(anyhow!("give --config or --checkpoint")),
    }
}

/// Evaluates one synthetic document of `length` tokens, generated segment by segment (so the
/// document itself takes no memory), with the memory carried across segments as `infini eval`
/// does; returns tokens/s and peak RSS.
fn eval_one(config: &Option<PathBuf>, checkpoint: &Option<PathBuf>, length: usize, backend: &str) -> Result<serde_json::Value> {
    let device = infini_train::backend::device(backend).map_err(|e| anyhow!(e))?;
    let (model, mc) = bench_model(config, checkpoint, &device)?;
    let n = mc.segment_len;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_token = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % mc.vocab_size as u64) as u32
    };
    let rss_before = peak_rss_mib();
    let mut memory = infini_model::MemoryState::empty(&mc, 1, &device);
    let (start, mut nll, mut done) = (Instant::now(), 0.0, 0usize);
    let mut carry = next_token();
    while done + 1 < length {
        let take = (length - 1 - done).min(n);
        let mut tokens = vec![carry];
        tokens.extend((0..take).map(|_| next_token()));
        carry = tokens[take];
        let mut segment = infini_data::SegmentBatch {
            batch: 1,
            segment_len: n,
            inputs: vec![0; n],
            targets: vec![0; n],
            mask: vec![0.0; n],
            reset: vec![done == 0],
            docs: vec![Some(0)],
        };
        segment.inputs[..take].copy_from_slice(&tokens[..take]);
        segment.targets[..take].copy_from_slice(&tokens[1..]);
        segment.mask[..take].fill(1.0);
        let (loss, next) = infini_train::loss::segment_nll(&model, &segment, memory, &device);
        memory = next;
        nll += loss.sum().into_scalar::<f64>();
        done += take;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({
        "length": length, "tokens": done, "seconds": seconds, "tokens_per_s": done as f64 / seconds,
        "peak_rss_mib": peak_rss_mib(), "rss_before_eval_mib": rss_before, "loss": nll / done.max(1) as f64,
    }))
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::EvalOne { config, checkpoint, length, backend } => {
            println!("{}", eval_one(&config, &checkpoint, length, &backend)?);
            Ok(())
        }
        BenchCommand::Eval { config, checkpoint, lengths, json, backend } => {
            let lengths = infini_train::generate::parse_lengths(&lengths).map_err(|e| anyhow!("--lengths: {e}"))?;
            let exe = std::env::current_exe()?;
            let mut results = Vec::new();
            for length in lengths {
                // A fresh process per length, so each peak RSS is its own.
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(["bench", "eval-one", "--length", &length.to_string(), "--backend", &backend]);
                if let Some(c) = &config {
                    cmd.arg("--config").arg(c);
                }
                if let Some(c) = &checkpoint {
                    cmd.arg("--checkpoint").arg(c);
                }
                let out = cmd.output()?;
                if !out.status.success() {
                    return Err(anyhow!("{}", String::from_utf8_lossy(&out.stderr).trim()));
                }
                let line: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                eprintln!(
                    "{length:>9} tokens: {:>8.0} tokens/s, peak RSS {:.0} MiB",
                    line["tokens_per_s"].as_f64().unwrap_or(0.0),
                    line["peak_rss_mib"].as_f64().unwrap_or(0.0)
                );
                results.push(line);
            }
            let text = serde_json::to_string_pretty(&json!({ "eval": results, "backend": backend,
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) }))?;
            println!("{text}");
            if let Some(path) = json {
                std::fs::write(&path, text)?;
            }
            Ok(())
        }
        BenchCommand::Data { dataset, tokenizer, batch, segment_len, seconds, json } => {
            let corpus = open_dataset(&dataset.dataset, dataset.format.as_deref(), dataset.config_filter)?;
            let tok = Tokenizer::load(&tokenizer)?;
            let dir = tempfile::tempdir()?;
            let out = dir.path().join("prepared");
            let start = Instant::now();
            let manifest = prepare(&corpus, &tok, &out, &PrepareOptions::default())?;
            let prepare_s = start.elapsed().as_secs_f64();
            let prepared_tokens: u64 = manifest.splits.values().map(|s| s.tokens).sum();

            let split = Arc::new(PreparedData::open(&out)?.split(Split::Train)?);
            let mut stream = SegmentStream::shuffled(split, batch, segment_len, 0)?;
            let (start, mut tokens, mut segments) = (Instant::now(), 0u64, 0u64);
            while start.elapsed().as_secs_f64() < seconds {
                tokens += stream.next_segment().num_targets() as u64;
                segments += 1;
            }
            let loader_s = start.elapsed().as_secs_f64();
            let result = json!({
                "prepare": {"tokens": prepared_tokens, "seconds": prepare_s, "tokens_per_s": prepared_tokens as f64 / prepare_s},
                "loader": {"batch": batch, "segment_len": segment_len, "segments": segments, "tokens": tokens,
                           "seconds": loader_s, "tokens_per_s": tokens as f64 / loader_s},
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            });
            let text = serde_json::to_string_pretty(&result)?;
            println!("{text}");
            if let Some(path) = json {
                std::fs::write(&path, text)?;
            }
            Ok(())
        }
    }
}
