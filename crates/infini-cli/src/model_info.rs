//! `infini model-info`: sizes derived from a config, without building the model.

use std::path::Path;

use anyhow::{Result, anyhow};
use infini_data::toml_file::{self, ModelTable};
use infini_model::ModelConfig;
use infini_data::error::one_line;
use infini_train::RunConfig;
use infini_train::config::{DataConfig, TrainConfig};
use infini_train::memory_estimate::{MemoryEstimate, estimate};

/// Reads the `[model]` table of `path` and prints its sizes; with `estimate` (`Some(batch
/// override)`), also the peak training memory.
pub fn run(path: &Path, json: bool, estimate: Option<Option<usize>>) -> Result<()> {
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
        let mut value = value;
        if let Some(batch) = estimate {
            let (e, setup) = training_memory(path, &model, batch)?;
            value["training_memory"] = serde_json::json!({ "setup": setup, "bytes": e, "gib": gib_table(&e) });
        }
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
        if let Some(batch) = estimate {
            let (e, setup) = training_memory(path, &model, batch)?;
            let g = |b: u64| b as f64 / GIB;
            println!("training memory   {setup}");
            println!("  weights         {:>8.2} GiB", g(e.weights));
            println!("  gradients       {:>8.2} GiB", g(e.gradients));
            println!("  optimizer       {:>8.2} GiB", g(e.optimizer));
            println!("  activations     {:>8.2} GiB per backprop window ({:.2} GiB with train.checkpointing)", g(e.activations), g(e.activations_checkpointed));
            println!("  memory state    {:>8.2} GiB (every segment of a window)", g(e.memory_state));
            println!("  head logits     {:>8.2} GiB (the segments of a window at once, up to 128 MiB of logits)", g(e.head));
            println!("  runtime         {:>8.2} GiB (the program, its threads and allocator arenas)", g(e.runtime));
            let (now, other) = if e.checkpointing { (e.total_checkpointed, e.total) } else { (e.total, e.total_checkpointed) };
            println!(
                "  peak on CPU     {:>8.2} GiB as configured ({:.2} GiB with checkpointing {})",
                g(now),
                g(other),
                if e.checkpointing { "off" } else { "on" }
            );
            let gpu_now = if e.checkpointing { e.gpu_total_checkpointed } else { e.gpu_total };
            println!(
                "  peak on a GPU   {:>8.2} GiB as configured ({:.2} GiB with checkpointing; its tensor ops keep more activations)",
                g(gpu_now),
                g(e.gpu_total_checkpointed)
            );
            for (gpu, gib) in [("80 GB", 80e9 / GIB), ("141 GB", 141e9 / GIB)] {
                let verdict = |t: u64| if g(t) <= gib * 0.9 { "fits" } else { "does not fit" };
                println!("  a {gpu} GPU: {} as configured, {} with checkpointing", verdict(gpu_now), verdict(e.gpu_total_checkpointed));
            }
        }
    }
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

fn gib_table(e: &MemoryEstimate) -> serde_json::Value {
    let g = |b: u64| (b as f64 / GIB * 1000.0).round() / 1000.0;
    serde_json::json!({
        "weights": g(e.weights), "gradients": g(e.gradients), "optimizer": g(e.optimizer),
        "activations": g(e.activations), "activations_checkpointed": g(e.activations_checkpointed),
        "memory_state": g(e.memory_state), "head": g(e.head), "runtime": g(e.runtime), "total": g(e.total), "total_checkpointed": g(e.total_checkpointed),
        "gpu_total": g(e.gpu_total), "gpu_total_checkpointed": g(e.gpu_total_checkpointed),
    })
}

/// The estimate for the config's [data] and [train] tables (their defaults where absent; a
/// config of only a [model] table needs no training data).
fn training_memory(path: &Path, model: &ModelConfig, batch: Option<usize>) -> Result<(MemoryEstimate, String)> {
    let table = toml_file::read::<toml::Table>(path).map_err(|e| anyhow!(e))?;
    let section = |name: &str| table.get(name).cloned().unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    let mut data = section("data");
    if let Some(t) = data.as_table_mut() {
        t.entry("prepared").or_insert_with(|| "".into());
    }
    let invalid = |name: &str, e: toml::de::Error| anyhow!("{}: [{name}]: {}", path.display(), one_line(e.message()));
    let mut config = RunConfig {
        model: model.clone(),
        data: data.try_into::<DataConfig>().map_err(|e| invalid("data", e))?,
        train: section("train").try_into::<TrainConfig>().map_err(|e| invalid("train", e))?,
        eval: Default::default(),
        checkpoint: Default::default(),
    };
    if let Some(b) = batch {
        config.data.batch_size = b;
    }
    let (d, t) = (&config.data, &config.train);
    let setup = format!(
        "batch {} × {} tokens ({} segments, backprop windows of {}), {:?}, f32 (an estimate; bf16 keeps some activations in half the size)",
        d.batch_size,
        d.seq_len,
        config.segments_per_example(),
        config.window_segments(),
        t.optimizer
    );
    Ok((estimate(&config), setup))
}
