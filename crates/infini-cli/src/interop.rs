//! `infini import` and `infini export`: models in the Hugging Face layout in and out.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use infini_model::MemoryKind;
use infini_train::hf::{self, IMPORT_GATE_INIT, ImportOptions};

/// Import a Llama-family model (Hugging Face layout) as an infini checkpoint.
#[derive(Args)]
pub struct ImportArgs {
    /// Folder with config.json, model.safetensors (or shards with model.safetensors.index.json) and tokenizer.json.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The checkpoint folder to create (must not exist); `eval`, `generate`, `passkey`, `inspect` and `train --init-from` take it.
    #[arg(long, value_name = "CKPT")]
    pub out: PathBuf,
    /// Tokens per segment: local attention's span and the memory's write unit.
    #[arg(long, default_value_t = 2048)]
    pub segment_len: usize,
    /// Memory: linear or delta (Infini-attention), none (local attention only) or xl.
    #[arg(long, default_value = "linear")]
    pub memory: String,
    /// Initial gate β of every head. The default, −8 (sigmoid 0.03%), keeps the imported model's
    /// outputs those of the original until training opens the gates; 0 would halve every
    /// attention output.
    #[arg(long, default_value_t = IMPORT_GATE_INIT, allow_hyphen_values = true)]
    pub gate_init: f64,
}

/// Export a checkpoint to the Hugging Face layout (config.json, model.safetensors, tokenizer.json).
#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint folder, or a run folder (its best checkpoint, else its latest).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The folder to create (must not exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let memory: MemoryKind = serde_json::from_value(serde_json::Value::String(args.memory.clone()))
        .map_err(|_| anyhow!("--memory {}: expected linear, delta, none or xl", args.memory))?;
    let options = ImportOptions { segment_len: args.segment_len, memory, gate_init: args.gate_init };
    let start = std::time::Instant::now();
    let imported = hf::import(&args.from, &args.out, &options).map_err(|e| anyhow!(e))?;
    let c = &imported.config;
    println!(
        "imported {} ({} tensors, {:.1}M parameters: {} layers × {} heads of {} ({} key/value), d_model {}, FFN {}, vocab {}) in {:.1}s",
        args.from.display(),
        imported.tensors,
        imported.parameters as f64 / 1e6,
        c.n_layers,
        c.n_heads,
        c.head_dim(),
        c.kv_heads(),
        c.d_model,
        c.ffn_hidden,
        c.vocab_size,
        start.elapsed().as_secs_f64()
    );
    println!(
        "added Infini-attention: memory {:?}, segments of {} tokens, gates β = {} (sigmoid {:.4})",
        c.memory,
        c.segment_len,
        c.gate_init,
        1.0 / (1.0 + (-c.gate_init).exp())
    );
    println!("wrote {}", args.out.display());
    Ok(())
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let out = hf::export(&args.checkpoint, &args.out).map_err(|e| anyhow!(e))?;
    println!("wrote {} (config.json, model.safetensors, tokenizer.json)", out.display());
    Ok(())
}
