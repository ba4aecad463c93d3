//! `infini tokenizer …` and `infini data …`: wiring to infini-data.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use infini_data::shards::PrepareOptions;
use infini_data::{Format, PreparedData, Split, Tokenizer, open_dataset, prepare, tokenizer::train_bpe};

/// Where a corpus is: a dataset card or a folder.
#[derive(Args, Clone)]
pub struct DatasetArgs {
    /// A dataset card (datasets/*.toml) or a corpus folder.
    #[arg(long, value_name = "CARD_OR_DIR")]
    pub dataset: PathBuf,
    /// Layout of a folder: pg19, proof-pile or text (guessed when omitted).
    #[arg(long)]
    pub format: Option<String>,
    /// proof-pile only: keep rows whose meta.config equals this (e.g. arxiv).
    #[arg(long)]
    pub config_filter: Option<String>,
}

/// Tokenizer verbs.
#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on a corpus's train split.
    Train {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// Number of token ids (the model's vocab_size must equal it).
        #[arg(long, default_value_t = 4096)]
        vocab_size: usize,
        /// Train on at most this many megabytes of text (the first documents in order).
        #[arg(long, default_value_t = 1000)]
        max_mb: u64,
        /// Make every digit a token of its own (numbers never merged): keys and codes of the
        /// synthetic tasks become one token per digit.
        #[arg(long)]
        split_digits: bool,
        /// Where to write tokenizer.json.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Data verbs.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize a corpus into binary shards (resumable, idempotent).
    Prepare {
        #[command(flatten)]
        dataset: DatasetArgs,
        /// A tokenizer.json (from `infini tokenizer train` or any Hugging Face tokenizer).
        #[arg(long)]
        tokenizer: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Target tokens per shard file.
        #[arg(long, default_value_t = 16 << 20)]
        shard_tokens: u64,
    },
    /// Check prepared data in full: each shard's SHA-256 against its index, every token id
    /// below the vocabulary size, the document ranges and the manifest's totals.
    Verify {
        /// A folder made by `infini data prepare`.
        dir: PathBuf,
    },
    /// Print documents, tokens and bytes per split of prepared data.
    Info {
        /// A folder made by `infini data prepare`.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn tokenizer(command: TokenizerCommand) -> Result<()> {
    match command {
        TokenizerCommand::Train { dataset, vocab_size, max_mb, split_digits, out } => {
            let corpus = open_dataset(&dataset.dataset, dataset.format.as_deref(), dataset.config_filter)?;
            let expected = (corpus.format != Format::ProofPile).then(|| {
                corpus.files(Split::Train).unwrap_or_default().iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum()
            });
            let expected = expected.filter(|&b| b > 0);
            let tok = train_bpe(corpus.documents(Split::Train)?, vocab_size, max_mb * 1_000_000, expected, split_digits, &out)?;
            println!("wrote {} ({} ids, sha256 {})", out.display(), tok.vocab_size(), &tok.hash[..16]);
            Ok(())
        }
    }
}

pub fn data(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Prepare { dataset, tokenizer, out, shard_tokens } => {
            let corpus = open_dataset(&dataset.dataset, dataset.format.as_deref(), dataset.config_filter)?;
            let tok = Tokenizer::load(&tokenizer)?;
            let start = Instant::now();
            let options = PrepareOptions { shard_tokens, ..PrepareOptions::default() };
            let manifest = prepare(&corpus, &tok, &out, &options)?;
            let tokens: u64 = manifest.splits.values().map(|s| s.tokens).sum();
            eprintln!(
                "{} tokens in {:.1}s ({:.0} tokens/s)",
                tokens,
                start.elapsed().as_secs_f64(),
                tokens as f64 / start.elapsed().as_secs_f64()
            );
            info(&out, false)
        }
        DataCommand::Info { dir, json } => info(&dir, json),
        DataCommand::Verify { dir } => {
            let start = Instant::now();
            for line in PreparedData::open(&dir)?.verify()? {
                println!("{line}");
            }
            println!("{} verified in {:.1}s", dir.display(), start.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

fn info(dir: &Path, json: bool) -> Result<()> {
    let data = PreparedData::open(dir)?;
    let m = &data.manifest;
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    println!("prepared data {}", dir.display());
    println!("source        {}", m.source);
    println!("tokenizer     sha256 {}…, {} ids, stored as {:?}", &m.tokenizer_hash[..16], m.vocab_size, m.dtype);
    match m.end_of_text {
        Some(id) => println!("end of text   id {id} ends every document"),
        None => println!("end of text   none (the tokenizer has no <|endoftext|>)"),
    }
    println!("{:<11} {:>9} {:>13} {:>14} {:>12} {:>7} {:>7}", "split", "documents", "tokens", "bytes", "words", "bytes/tok", "shards");
    for (split, s) in &m.splits {
        println!(
            "{:<11} {:>9} {:>13} {:>14} {:>12} {:>9.2} {:>7}",
            split.name(),
            s.documents,
            s.tokens,
            s.bytes,
            s.words,
            s.bytes as f64 / s.tokens.max(1) as f64,
            s.shards
        );
    }
    Ok(())
}
