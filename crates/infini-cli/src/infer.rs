//! `infini generate`, `infini passkey` and `infini inspect`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use infini_data::{PreparedData, Split, Tokenizer};
use infini_train::checkpoint::{self, load_for_inference};
use infini_train::generate::{Sampling, generate, parse_lengths, passkey_cell};
use infini_train::{backend, inspect};

/// Arguments of `infini generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// A checkpoint folder, or a run folder (its best checkpoint, else its latest).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The prompt text.
    #[arg(long, conflicts_with = "prompt_file", required_unless_present = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from this file (any length: it is read segment by segment into memory).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200)]
    pub max_new_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
}

/// Arguments of `infini passkey`.
#[derive(Args)]
pub struct PasskeyArgs {
    /// A checkpoint folder, or a run folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prompt lengths in tokens (K = 1024, M = 1024²).
    #[arg(long, default_value = "2K,8K,32K")]
    pub lengths: String,
    /// Depths of the key in the filler (0 = start, 1 = end).
    #[arg(long, default_value = "0,0.25,0.5,0.75,1")]
    pub depths: String,
    /// Prompts per (length, depth).
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Seed of the keys.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the table as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also show, for one prompt per length (key at the middle), each head's gate, how much of
    /// its memory read the question puts on the key sentence versus the filler, the size of
    /// that read, and how much of it changes when only the key's digits change (the part that
    /// carries the key, under either update rule).
    #[arg(long)]
    pub diagnose: bool,
    /// Compute backend: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
}

/// Arguments of `infini inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A checkpoint folder, or a run folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prepared data whose first validation document is read to measure the memory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Tokens of that document to read.
    #[arg(long, default_value_t = 16384)]
    pub max_tokens: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Compute backend: flex, wgpu or cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
}

fn encoder(tok: &Tokenizer) -> impl Fn(&str) -> Vec<u32> + '_ {
    move |s: &str| tok.encode(s).expect("tokenizer encodes any text")
}

pub fn generate_cmd(args: GenerateArgs) -> Result<()> {
    let device = backend::device(&args.backend).map_err(|e| anyhow!(e))?;
    let (model, config, _, ckpt) = load_for_inference(&args.checkpoint, &device).map_err(|e| anyhow!(e))?;
    let tok = checkpoint::tokenizer(&ckpt, &config).map_err(|e| anyhow!(e))?;
    let text = match (args.prompt, args.prompt_file) {
        (Some(p), _) => p,
        (None, Some(f)) => std::fs::read_to_string(&f).map_err(|e| anyhow!("cannot read --prompt-file {}: {e}", f.display()))?,
        (None, None) => unreachable!("clap requires a prompt"),
    };
    let prompt = tok.encode(&text)?;
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let sampling = Sampling { temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    let stop = tok.token_id(infini_data::tokenizer::END_OF_TEXT);
    let (mut generated, mut printed) = (Vec::new(), String::new());
    let mut stdout = std::io::stdout();
    let start = std::time::Instant::now();
    let out = generate(&model, &config.model, &prompt, args.max_new_tokens, &sampling, stop, &device, |t| {
        generated.push(t);
        // Print the text decoded so far, less any incomplete trailing character.
        let text = tok.decode(&generated).unwrap_or_default();
        let text = text.trim_end_matches('\u{fffd}');
        if text.len() > printed.len() && text.starts_with(printed.as_str()) {
            let _ = write!(stdout, "{}", &text[printed.len()..]);
            let _ = stdout.flush();
            printed = text.to_string();
        }
    });
    println!();
    eprintln!(
        "{} prompt tokens, {} generated in {:.1}s ({:.1} tokens/s)",
        prompt.len(),
        out.len(),
        start.elapsed().as_secs_f64(),
        out.len() as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn passkey_cmd(args: PasskeyArgs) -> Result<()> {
    let device = backend::device(&args.backend).map_err(|e| anyhow!(e))?;
    let (model, config, _, ckpt) = load_for_inference(&args.checkpoint, &device).map_err(|e| anyhow!(e))?;
    let tok = checkpoint::tokenizer(&ckpt, &config).map_err(|e| anyhow!(e))?;
    let lengths = parse_lengths(&args.lengths).map_err(|e| anyhow!("--lengths: {e}"))?;
    let depths: Vec<f64> = args
        .depths
        .split(',')
        .map(|d| d.trim().parse::<f64>().ok().filter(|d| (0.0..=1.0).contains(d)))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow!("--depths: use numbers between 0 and 1, e.g. 0,0.5,1"))?;
    let encode = encoder(&tok);
    let decode = |ids: &[u32]| tok.decode(ids).unwrap_or_default();
    let mut cells = Vec::new();
    println!("passkey: exact answers (in brackets: digits right at their position; chance 10%)");
    print!("{:>9}", "length");
    for d in &depths {
        print!(" {:>14}", format!("d={d}"));
    }
    // Printed after the table when some answer had the key and more digits after it.
    let mut prefixed = Vec::new();
    println!();
    for &length in &lengths {
        print!("{length:>9}");
        for &depth in &depths {
            let cell = passkey_cell(&model, &config.model, &encode, &decode, length, depth, args.trials, args.seed, &device);
            print!(" {:>6.0}% ({:>3.0}%)", cell.accuracy * 100.0, cell.digit_accuracy * 100.0);
            let _ = std::io::stdout().flush();
            if cell.prefix_accuracy > cell.accuracy {
                prefixed.push(format!("{length} d={depth}: {:.0}%", 100.0 * cell.prefix_accuracy));
            }
            cells.push(cell);
        }
        println!();
    }
    if !prefixed.is_empty() {
        println!("answers that began with the key but went on with more digits count as wrong; with them: {}", prefixed.join(", "));
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&cells)?).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if args.diagnose {
        diagnose(&model, &config.model, &encode, &lengths, &device);
    }
    Ok(())
}

/// Per head: gate, and the share of the question's memory read that falls on the key sentence.
fn diagnose(model: &infini_model::InfiniLm, config: &infini_model::ModelConfig, encode: &dyn Fn(&str) -> Vec<u32>, lengths: &[usize], device: &burn::tensor::Device) {
    if !config.memory.has_memory() {
        println!("no compressive memory (memory = {:?}): nothing to diagnose", config.memory);
        return;
    }
    let gates = inspect::inspect(model, config, None, device).gates;
    println!("\ngate sigmoid(beta) per layer and head (1 = memory, 0 = local):");
    for (l, g) in gates.iter().enumerate() {
        println!("  layer {l}: {}", g.iter().map(|g| format!("{g:.3}")).collect::<Vec<_>>().join("  "));
    }
    let (key, other_key) = (48_213, 73_950);
    let sentence = encode(&infini_train::generate::passkey_sentence(key)).len();
    for &length in lengths {
        let (prompt, at) = infini_train::generate::passkey_prompt(encode, key, length, 0.5);
        let r = inspect::retrieval_share(model, config, &prompt, at..at + sentence, device);
        // The same prompt with other digits in the key: what changes in the read is what carries the key.
        let (other, other_at) = infini_train::generate::passkey_prompt(encode, other_key, length, 0.5);
        let change = (other.len() == prompt.len() && other_at == at)
            .then(|| inspect::read_change(&r, &inspect::retrieval_share(model, config, &other, at..at + sentence, device), config.n_heads));
        println!(
            "length {length}, key at depth 0.5: of the {} tokens in memory {} are the key sentence ({:.2}%)",
            r.memory_tokens,
            r.focus_tokens,
            100.0 * r.focus_tokens as f64 / r.memory_tokens.max(1) as f64
        );
        println!("  share of the question's read on the key sentence (weight per key token / per filler token):");
        for (l, (share, ratio)) in r.share.iter().zip(&r.ratio).enumerate() {
            let cells: Vec<String> = share.iter().zip(ratio).map(|(s, q)| format!("{:>6.2}% ({q:>7.1}x)", 100.0 * s)).collect();
            println!("  layer {l}: {}", cells.join("  "));
        }
        println!("  size of the question's read ‖σ(q)M / σ(q)z‖ (before the gate):");
        for (l, norms) in r.read_norm(config.n_heads).iter().enumerate() {
            println!("  layer {l}: {}", norms.iter().map(|n| format!("{n:>8.3}")).collect::<Vec<_>>().join("  "));
        }
        match change {
            Some(change) => {
                println!("  how much of the read changes with the key's digits ({key} vs {other_key}: ‖Δread‖ / ‖read‖):");
                for (l, c) in change.iter().enumerate() {
                    println!("  layer {l}: {}", c.iter().map(|c| format!("{:>7.2}%", 100.0 * c)).collect::<Vec<_>>().join("  "));
                }
            }
            None => println!("  (the key {other_key} tokenizes to another length than {key}: no comparison of reads)"),
        }
    }
}

pub fn inspect_cmd(args: InspectArgs) -> Result<()> {
    let device = backend::device(&args.backend).map_err(|e| anyhow!(e))?;
    let (model, config, state, ckpt) = load_for_inference(&args.checkpoint, &device).map_err(|e| anyhow!(e))?;
    let document = match &args.data {
        Some(dir) => {
            let split = PreparedData::open(dir)?.split(Split::Validation)?;
            if split.is_empty() {
                bail!("{} has no validation document to read", dir.display());
            }
            Some(split.tokens(0, 0..args.max_tokens))
        }
        None => None,
    };
    let report = inspect::inspect(&model, &config.model, document.as_deref(), &device);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("checkpoint {} (step {}), memory = {:?}", ckpt.display(), state.step, config.model.memory);
    if report.gates.is_empty() {
        println!("this model has no memory (memory = none): nothing to inspect");
        return Ok(());
    }
    println!("sigmoid(beta) per head: 1 = memory only, 0 = local attention only");
    for (layer, gates) in report.gates.iter().enumerate() {
        let cells: Vec<String> = gates.iter().map(|g| format!("{g:.3}")).collect();
        println!("  layer {layer:>2}: {}", cells.join("  "));
    }
    if report.tokens_read > 0 {
        println!("‖M‖ per head after reading {} tokens of the first validation document", report.tokens_read);
        for (layer, norms) in report.memory_norm.iter().enumerate() {
            let cells: Vec<String> = norms.iter().map(|n| format!("{n:.1}")).collect();
            println!("  layer {layer:>2}: {}", cells.join("  "));
        }
    }
    Ok(())
}
