//! `infini eval`: perplexity of a checkpoint over whole documents.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use infini_data::{PreparedData, Split};
use infini_train::checkpoint;
use infini_train::eval::{EvalOptions, evaluate};
use infini_train::backend;

/// Arguments of `infini eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint folder, or a run folder (its best checkpoint, else its latest).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared data (default: the data the checkpoint was trained on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split to evaluate: train, validation or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Evaluate only the first N documents (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_docs: usize,
    /// Read at most T tokens of each document (0 = whole documents).
    #[arg(long, default_value_t = 0)]
    pub max_tokens_per_doc: usize,
    /// Documents evaluated side by side.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Also write the full results as JSON here, the perplexity by segment index beside it as
    /// CSV (same name, .csv) and as a plot (.svg).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Count only the answer tokens of a synthetic task (default: as the run was trained,
    /// `data.loss_on`).
    #[arg(long)]
    pub answers_only: Option<bool>,
    /// Compute backend: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
}

/// Perplexity against the segment index: falling means later segments gain from the memory.
fn plot_by_segment(result: &infini_train::eval::EvalResult, path: &std::path::Path, segment_len: usize) -> Result<(), String> {
    use infini_train::plot::{Chart, Series, save_grid};
    let points = result.by_segment.iter().map(|s| (s.index as f64, s.perplexity)).collect();
    let chart = Chart {
        title: format!("perplexity by segment ({segment_len} tokens each); overall {:.2}", result.perplexity),
        x_label: "segment index in the document".into(),
        log_y: false,
        series: vec![Series { name: "perplexity".into(), points, markers: false }],
    };
    save_grid(&[chart], 1, path)
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = backend::device(&args.backend).map_err(|e| anyhow!(e))?;
    let ckpt = checkpoint::resolve(&args.checkpoint).map_err(|e| anyhow!(e))?;
    let (config, state) = checkpoint::read_meta(&ckpt).map_err(|e| anyhow!(e))?;
    if args.data.is_none() && config.data.prepared.as_os_str().is_empty() {
        bail!("{} records no training data (an imported model): pass --data DIR (data prepared with its tokenizer)", ckpt.display());
    }
    let data_dir = args.data.unwrap_or_else(|| config.data.prepared.clone());
    if !data_dir.exists() && data_dir.is_relative() {
        bail!(
            "{} (the run's data.prepared) does not exist here: runs before this version recorded it relative to the folder they were trained in; run from there or pass --data DIR",
            data_dir.display()
        );
    }
    let data = PreparedData::open(&data_dir)?;
    if data.manifest.vocab_size != config.model.vocab_size {
        bail!(
            "{} has {} token ids but the model of {} has vocab_size {}: evaluate on data prepared with the model's tokenizer",
            data_dir.display(),
            data.manifest.vocab_size,
            ckpt.display(),
            config.model.vocab_size
        );
    }
    if data.manifest.tokenizer_hash != state.tokenizer_hash {
        eprintln!("warning: {} was prepared with another tokenizer than the training data (same vocab size)", data_dir.display());
    }
    let split = Split::parse(&args.split)?;
    let split_data = Arc::new(data.split(split)?);
    if split_data.is_empty() {
        bail!("the {split} split of {} has no documents", data_dir.display());
    }
    let model = checkpoint::load_model(&ckpt, config.model.init(&device)).map_err(|e| anyhow!(e))?;
    let answers_only = args.answers_only.unwrap_or(config.data.loss_on == infini_train::config::LossOn::Answers);
    let options = EvalOptions {
        max_docs: args.max_docs,
        max_tokens_per_doc: args.max_tokens_per_doc,
        batch_size: args.batch_size,
        progress: true,
        answers_only,
    };
    let result = evaluate(&model, &config.model, split_data, &options, &device)?;
    println!("checkpoint        {} (step {})", ckpt.display(), state.step);
    println!("data              {} [{split}], {} documents, {} tokens", data_dir.display(), result.documents, result.tokens);
    println!("loss              {:.4} nats/token{}", result.loss, if answers_only { " (answer tokens only)" } else { "" });
    println!("perplexity        {:.3} (token), {:.3} (word)", result.perplexity, result.word_perplexity);
    println!("bits per byte     {:.4}", result.bits_per_byte);
    let n = config.model.segment_len;
    let head = (n / 8).max(1);
    println!(
        "by position       {:.3} in a segment's first {head} tokens, {:.3} after them (segments after the first)",
        result.position_perplexity(0..head),
        result.position_perplexity(head..n)
    );
    println!("speed             {:.0} tokens/s ({:.1}s)", result.tokens_per_s, result.seconds);
    if let Some(path) = args.json {
        let write = |p: &std::path::Path, text: String| {
            infini_data::fsutil::atomic_write(p, text.as_bytes()).map_err(|e| anyhow!("cannot write {}: {e}", p.display()))
        };
        write(&path, serde_json::to_string_pretty(&result)?)?;
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(["segment_index", "tokens", "nll", "perplexity"])?;
        for s in &result.by_segment {
            csv.serialize((s.index, s.tokens, s.nll, s.perplexity))?;
        }
        write(&path.with_extension("csv"), String::from_utf8(csv.into_inner()?)?)?;
        let svg = path.with_extension("svg");
        plot_by_segment(&result, &svg, config.model.segment_len).map_err(|e| anyhow!(e))?;
        println!("wrote             {}, {} and {}", path.display(), path.with_extension("csv").display(), svg.display());
    }
    Ok(())
}
