//! The Hugging Face layout in and out: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`) and `tokenizer.json`.
//!
//! [`import`] turns a Llama-family model into an infini checkpoint: every pretrained tensor is
//! mapped onto the Infini-Transformer, which adds only the per-head gates β (and the memory,
//! which is state, not weights). The gates start at [`IMPORT_GATE_INIT`], so that the imported
//! model first computes what the original does. [`export`] writes a checkpoint back in the same
//! layout, with the gates under plain names of their own (see docs/interop.md).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{DType, Device};
use infini_data::StreamCursor;
use infini_data::error::one_line;
use infini_model::{InfiniLm, MemoryKind, ModelConfig};
use serde_json::{Value, json};

use crate::checkpoint::{self, TrainState};
use crate::config::{DataConfig, RunConfig};

/// The gates' initial β for an imported model: sigmoid(−8) = 0.03%, so the output is
/// 99.97% that of local attention, i.e. of the pretrained model (a gate at 0 would be 50%:
/// every attention output halved). Adam-type optimizers move β by about the learning rate per
/// step whatever sigmoid's slope there, so the gates can still open during training.
pub const IMPORT_GATE_INIT: f64 = -8.0;

/// What the imported model adds to the pretrained one.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Tokens per segment (local attention's span and the memory's write unit).
    pub segment_len: usize,
    /// Memory kind: `linear` or `delta` (Infini-attention), or `none`/`xl` for baselines.
    pub memory: MemoryKind,
    /// Initial gate β.
    pub gate_init: f64,
}

/// The pairs (Hugging Face name, infini name) for a model of `layers` blocks, `{i}` = layer.
/// Each name is that of a tensor in its framework's own layout; linear weights are transposed
/// and the norms' `weight` is Burn's `gamma` (handled by burn-store's PyTorch adapters).
const LAYER_NAMES: [(&str, &str); 9] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn.wq.weight"),
    ("self_attn.k_proj.weight", "attn.wk.weight"),
    ("self_attn.v_proj.weight", "attn.wv.weight"),
    ("self_attn.o_proj.weight", "attn.wo.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn.w1.weight"),
    ("mlp.up_proj.weight", "ffn.w3.weight"),
    ("mlp.down_proj.weight", "ffn.w2.weight"),
];
/// Name of the gate β of layer `i` in an exported file (an infini-only tensor of shape [heads]).
pub const GATE_NAME: &str = "self_attn.memory_gate";
const GLOBAL_NAMES: [(&str, &str); 3] =
    [("model.embed_tokens.weight", "embedding.weight"), ("model.norm.weight", "final_norm.weight"), ("lm_head.weight", "lm_head.weight")];

fn hf_to_infini() -> KeyRemapper {
    let mut r = KeyRemapper::new();
    for (hf, ours) in GLOBAL_NAMES {
        r = r.add_pattern(format!("^{}$", regex_escape(hf)), ours).expect("valid pattern");
    }
    for (hf, ours) in LAYER_NAMES {
        r = r.add_pattern(format!(r"^model\.layers\.(\d+)\.{}$", regex_escape(hf)), format!("blocks.$1.{ours}")).expect("valid pattern");
    }
    r.add_pattern(format!(r"^model\.layers\.(\d+)\.{}$", regex_escape(GATE_NAME)), "blocks.$1.attn.beta").expect("valid pattern")
}

fn infini_to_hf() -> KeyRemapper {
    let mut r = KeyRemapper::new();
    for (hf, ours) in GLOBAL_NAMES {
        r = r.add_pattern(format!("^{}$", regex_escape(ours)), hf).expect("valid pattern");
    }
    // The PyTorch adapter has already renamed Burn's `gamma` to `weight` when names are remapped.
    for (hf, ours) in LAYER_NAMES {
        r = r.add_pattern(format!(r"^blocks\.(\d+)\.{}$", regex_escape(ours)), format!("model.layers.$1.{hf}")).expect("valid pattern");
    }
    r.add_pattern(r"^blocks\.(\d+)\.attn\.beta$", format!("model.layers.$1.{GATE_NAME}")).expect("valid pattern")
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

/// The infini model config of a Llama-family `config.json`; errors name the key.
pub fn llama_config(hf: &Value, options: &ImportOptions) -> Result<ModelConfig, String> {
    let key_error = |key: &str, what: &str| format!("config.json: `{key}` {what}");
    let uint = |key: &str| -> Result<usize, String> {
        hf.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| key_error(key, "is missing or not a whole number"))
    };
    let model_type = hf.get("model_type").and_then(Value::as_str).unwrap_or("");
    if model_type == "qwen2" {
        return Err(key_error("model_type", "is \"qwen2\", whose Q/K/V projections have biases; infini's have none"));
    }
    if !matches!(model_type, "llama" | "mistral") {
        return Err(key_error(
            "model_type",
            &format!("is {model_type:?}; infini imports the Llama family (model_type \"llama\", LlamaForCausalLM)"),
        ));
    }
    if let Some(act) = hf.get("hidden_act").and_then(Value::as_str)
        && act != "silu"
    {
        return Err(key_error("hidden_act", &format!("is {act:?}; infini's feed-forward is SwiGLU (\"silu\")")));
    }
    for key in ["attention_bias", "mlp_bias"] {
        if hf.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(key_error(key, "is true; infini's projections have no biases"));
        }
    }
    if let Some(scaling) = hf.get("rope_scaling").filter(|v| !v.is_null()) {
        return Err(key_error("rope_scaling", &format!("is {scaling}; infini implements plain RoPE only (rope_scaling null)")));
    }
    if let Some(window) = hf.get("sliding_window").filter(|v| !v.is_null()) {
        return Err(key_error("sliding_window", &format!("is {window}; infini's local attention spans the whole segment (sliding_window null)")));
    }
    let (d_model, n_heads) = (uint("hidden_size")?, uint("num_attention_heads")?);
    let n_kv_heads = match hf.get("num_key_value_heads") {
        None | Some(Value::Null) => n_heads,
        Some(_) => uint("num_key_value_heads")?,
    };
    let head_dim = match hf.get("head_dim") {
        None | Some(Value::Null) => None,
        Some(_) => Some(uint("head_dim")?),
    };
    let float = |key: &str, default: f64| -> Result<f64, String> {
        match hf.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| key_error(key, "is not a number")),
        }
    };
    let config = ModelConfig {
        vocab_size: uint("vocab_size")?,
        d_model,
        n_layers: uint("num_hidden_layers")?,
        n_heads,
        n_kv_heads: (n_kv_heads != n_heads).then_some(n_kv_heads),
        head_dim: head_dim.filter(|&h| h * n_heads != d_model),
        ffn_hidden: uint("intermediate_size")?,
        segment_len: options.segment_len,
        memory: options.memory,
        gate_init: options.gate_init,
        rope_theta: float("rope_theta", 10_000.0)?,
        norm_eps: float("rms_norm_eps", 1e-6)?,
        tie_embeddings: hf.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
        dropout: 0.0,
        init_std: float("initializer_range", 0.02)?,
    };
    config.validate().map_err(|e| format!("config.json maps to an invalid infini model: {e}"))?;
    Ok(config)
}

/// The safetensors files of a Hugging Face folder: the shards of `model.safetensors.index.json`,
/// or `model.safetensors`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let map = read_json(&index)?;
        let files: std::collections::BTreeSet<String> = map
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{}: no `weight_map` object", index.display()))?
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let files: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(format!("shard {} (listed in {}) is missing", missing.display(), index.display()));
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        Ok(vec![single])
    } else {
        Err(format!("{} holds neither model.safetensors nor model.safetensors.index.json", dir.display()))
    }
}

/// What [`import`] did.
#[derive(Debug)]
pub struct Imported {
    /// The infini model config.
    pub config: ModelConfig,
    /// Tensors read from the pretrained files.
    pub tensors: usize,
    /// Pretrained parameters (all but the gates).
    pub parameters: usize,
}

/// Loads the weights of the Hugging Face folder `from` into a model of `config` (its
/// config.json mapped by [`llama_config`]) on `device`.
fn load_pretrained(from: &Path, config: ModelConfig, device: &Device) -> Result<(InfiniLm, Imported), String> {
    let mut model = config.init_lazy(device);
    let mut applied = std::collections::BTreeSet::new();
    let mut unused = Vec::new();
    for file in weight_files(from)? {
        let mut store = SafetensorsStore::from_file(&file)
            .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
            .remap(hf_to_infini())
            .allow_partial(true)
            .validate(false);
        let result = model.load_from(&mut store).map_err(|e| format!("{}: {}", file.display(), one_line(&e.to_string())))?;
        if let Some(e) = result.errors.first() {
            return Err(format!("{}: {}", file.display(), apply_error(e)));
        }
        applied.extend(result.applied);
        // RoPE tables (`rotary_emb.inv_freq`) are recomputed, and a tied model's copy of the
        // embedding as `lm_head.weight` is the embedding itself.
        unused.extend(result.unused.into_iter().filter(|n| !n.ends_with("rotary_emb.inv_freq") && !(config.tie_embeddings && n == "lm_head.weight")));
    }
    if let Some(name) = unused.first() {
        return Err(format!("{}: tensor `{name}` has no place in a Llama model as infini maps it (is it a Llama-family checkpoint?)", from.display()));
    }
    let expected: Vec<String> = model.collect(None, None, false).into_iter().map(|t| t.name).filter(|p| !p.ends_with("attn.beta")).collect();
    if let Some(missing) = expected.iter().find(|p| !applied.contains(*p)) {
        let hf = infini_name_to_hf(missing);
        return Err(format!("{}: no weight file holds `{hf}` (for infini's {missing}); is a shard missing or truncated?", from.display()));
    }
    let parameters = model.num_params() - if config.memory.has_memory() { config.n_layers * config.n_heads } else { 0 };
    Ok((model, Imported { config, tensors: applied.len(), parameters }))
}

/// One line for a tensor that did not fit, in Hugging Face names and layouts.
fn apply_error(e: &burn::store::ApplyError) -> String {
    use burn::store::ApplyError;
    // Shapes as the file has them: PyTorch's [out, in] for the (transposed) matrices.
    let torch = |s: &burn::tensor::Shape| {
        let mut d = s.to_vec();
        d.reverse();
        format!("{d:?}")
    };
    match e {
        ApplyError::ShapeMismatch { path, expected, found } => format!(
            "tensor `{}` has shape {} but config.json makes it {}; the config and the weights disagree",
            infini_name_to_hf(path),
            torch(found),
            torch(expected)
        ),
        other => one_line(&other.to_string()),
    }
}

/// The Hugging Face name of an infini tensor (for error messages).
fn infini_name_to_hf(name: &str) -> String {
    let name = name.replace(".gamma", ".weight");
    infini_to_hf()
        .to_regex_pairs()
        .into_iter()
        .find(|(re, _)| re.is_match(&name))
        .map_or(name.clone(), |(re, to)| re.replace(&name, to.as_str()).into_owned())
}

/// Imports the Hugging Face folder `from` as an infini checkpoint folder `out` (which must not
/// exist): weights, a run config holding the model, and the tokenizer, whose size must equal
/// the embedding's.
pub fn import(from: &Path, out: &Path, options: &ImportOptions) -> Result<Imported, String> {
    if out.exists() {
        return Err(format!("{} already exists; choose another --out or delete it", out.display()));
    }
    // The cheap checks first (the folder, its config, its tokenizer), then the weights.
    if !from.is_dir() {
        return Err(format!("{} is not a folder (expected config.json, model.safetensors, tokenizer.json)", from.display()));
    }
    let config = llama_config(&read_json(&from.join("config.json"))?, options)?;
    let vocab_size = config.vocab_size;
    let tokenizer_path = from.join("tokenizer.json");
    let tokenizer = infini_data::Tokenizer::load(&tokenizer_path).map_err(|e| e.to_string())?;
    if tokenizer.vocab_size() != vocab_size {
        return Err(format!(
            "{} has {} token ids but the model's embedding has {vocab_size} rows (vocab_size); a model needs its own tokenizer",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
        ));
    }
    let device = Device::flex();
    let (model, imported) = load_pretrained(from, config, &device)?;
    let config = imported_run_config(imported.config.clone());
    let state = TrainState {
        step: 0,
        tokens: 0,
        cursor: StreamCursor { seed: None, epoch: 0, next: 0, streams: Vec::new(), documents: 0, tokens: 0 },
        best_val_loss: None,
        skipped_steps: 0,
        bad_in_row: 0,
        seconds: 0.0,
        tokenizer_hash: tokenizer.hash.clone(),
        memory_shapes: Vec::new(),
    };
    let bytes = fs::read(&tokenizer_path).map_err(|e| format!("cannot read {}: {e}", tokenizer_path.display()))?;
    checkpoint::save_standalone(out, &model, &config, &state, &bytes)?;
    Ok(imported)
}

/// The run config saved with an imported model: the model, and no training data (`eval` then
/// asks for `--data`; `train --init-from` takes its own config).
fn imported_run_config(model: ModelConfig) -> RunConfig {
    RunConfig { model, data: DataConfig::none(), train: Default::default(), eval: Default::default(), checkpoint: Default::default() }
}

/// The `config.json` of an exported model: Llama's keys, plus infini's own under `infini_*`.
pub fn export_config(m: &ModelConfig) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m.vocab_size,
        "hidden_size": m.d_model,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads,
        "num_key_value_heads": m.kv_heads(),
        "head_dim": m.head_dim(),
        "intermediate_size": m.ffn_hidden,
        "hidden_act": "silu",
        "rope_theta": m.rope_theta,
        "rope_scaling": null,
        "rms_norm_eps": m.norm_eps,
        "tie_word_embeddings": m.tie_embeddings,
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "float32",
        "initializer_range": m.init_std,
        "infini_memory": m.memory,
        "infini_segment_len": m.segment_len,
        "infini_gate_tensor": format!("model.layers.{{i}}.{GATE_NAME}"),
        "infini_gate_note": "β per head, before the sigmoid: output = sigmoid(β)·memory read + (1 − sigmoid(β))·local attention",
    })
}

/// Exports the checkpoint (folder or run) `checkpoint` into the new folder `out`:
/// `config.json`, `model.safetensors` (f32) and `tokenizer.json`.
pub fn export(checkpoint: &Path, out: &Path) -> Result<PathBuf, String> {
    if out.exists() {
        return Err(format!("{} already exists; choose another --out or delete it", out.display()));
    }
    let device = Device::flex();
    let (model, config, _, ckpt) = checkpoint::load_for_inference(checkpoint, &device)?;
    let tokenizer = checkpoint::tokenizer(&ckpt, &config)?;
    let tokenizer_bytes = fs::read(&tokenizer.path).map_err(|e| format!("cannot read {}: {e}", tokenizer.path.display()))?;
    checkpoint::create_folder_atomically(out, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp.join("model.safetensors"))
            .with_to_adapter(BurnToPyTorchAdapter)
            .remap(infini_to_hf())
            .metadata("format", "pt");
        model.save_into(&mut store).map_err(|e| format!("cannot write model.safetensors: {}", one_line(&e.to_string())))?;
        let config_json = serde_json::to_string_pretty(&export_config(&config.model)).expect("json");
        for (name, bytes) in [("config.json", config_json.as_bytes()), ("tokenizer.json", &tokenizer_bytes)] {
            fs::write(tmp.join(name), bytes).map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        Ok(())
    })?;
    Ok(out.to_path_buf())
}

/// Tensor names and shapes of a safetensors file's header (for docs and tests); reads only the
/// header.
pub fn safetensors_names(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, String> {
    use std::io::Read;
    let read_err = |e: std::io::Error| format!("cannot read the header of {}: {e}", path.display());
    let mut file = fs::File::open(path).map_err(read_err)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(read_err)?;
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    file.read_exact(&mut header).map_err(read_err)?;
    let header: Value = serde_json::from_slice(&header).map_err(|e| format!("{}: bad header: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, info) in header.as_object().into_iter().flatten().filter(|(k, _)| *k != "__metadata__") {
        let shape = info.get("shape").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).map(|v| v as usize).collect());
        out.insert(name.clone(), shape.unwrap_or_default());
    }
    Ok(out)
}
