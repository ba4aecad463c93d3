//! `infini bench …`: throughput measurements with JSON output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use infini_data::shards::PrepareOptions;
use infini_data::{PreparedData, SegmentStream, Split, Tokenizer, open_dataset, prepare};
use serde_json::json;

use crate::data::DatasetArgs;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
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

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
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
