//! `infini model-info`: sizes derived from a config, without building the model.

use std::path::Path;

use anyhow::{Result, anyhow};
use infini_data::toml_file::{self, ModelTable};
use infini_model::ModelConfig;

/// Reads the `[model]` table of `path` and prints its sizes.
pub fn run(path: &Path, json: bool) -> Result<()> {
    // Only the [model] table; the other tables are checked by the verbs that use them.
    let model = toml_file::read::<ModelTable<ModelConfig>>(path).map_err(|e| anyhow!(e))?.model;
    model.validate().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let params = model.num_params();
    let memory_floats = model.memory_floats();
    let memory_bytes = memory_floats * 4;
    if json {
        let value = serde_json::json!({
            "config": path.display().to_string(),
            "model": model,
            "head_dim": model.head_dim(),
            "parameters": params,
            "memory_floats_per_sequence": memory_floats,
            "memory_bytes_per_sequence": memory_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("config            {}", path.display());
        println!(
            "shape             {} layers × {} heads of {}{}, d_model {}, FFN {}, vocab {}",
            model.n_layers,
            model.n_heads,
            model.head_dim(),
            if model.kv_heads() == model.n_heads { String::new() } else { format!(" ({} key/value heads)", model.kv_heads()) },
            model.d_model,
            model.ffn_hidden,
            model.vocab_size
        );
        println!("memory update     {:?}, segment {} tokens", model.memory, model.segment_len);
        println!("parameters        {} ({:.1}M)", params, params as f64 / 1e6);
        println!(
            "memory/sequence   {} floats ({:.2} MiB f32), constant in sequence length",
            memory_floats,
            memory_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}
