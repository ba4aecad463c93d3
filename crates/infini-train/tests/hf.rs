//! Hugging Face interop: a Llama-layout folder written by hand (names and `[out, in]` weights as
//! `transformers` saves them) imports to a model with the same logits; export then import is
//! bit-identical; bad folders give one-line errors.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{InfiniLm, MemoryKind, MemoryState, ModelConfig};
use infini_train::checkpoint;
use infini_train::hf::{self, ImportOptions};
use safetensors::tensor::{Dtype, TensorView};

fn floats<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (shape, t.into_data().try_into_vec::<f32>().unwrap())
}

/// `[in, out]` (Burn's linear layout) → `[out, in]` (PyTorch's).
fn torch_linear(t: Tensor<2>) -> (Vec<usize>, Vec<f32>) {
    floats(t.transpose())
}

/// The model's weights under `transformers`' Llama names, in its layouts (no gates).
fn llama_tensors(model: &InfiniLm) -> Vec<(String, (Vec<usize>, Vec<f32>))> {
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), floats(model.embedding.weight.val())),
        ("model.norm.weight".to_string(), floats(model.final_norm.gamma.val())),
    ];
    if let Some(head) = &model.lm_head {
        out.push(("lm_head.weight".to_string(), torch_linear(head.weight.val())));
    }
    for (i, b) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), floats(b.attn_norm.gamma.val())));
        out.push((format!("{p}.post_attention_layernorm.weight"), floats(b.ffn_norm.gamma.val())));
        for (name, w) in [("q_proj", &b.attn.wq), ("k_proj", &b.attn.wk), ("v_proj", &b.attn.wv), ("o_proj", &b.attn.wo)] {
            out.push((format!("{p}.self_attn.{name}.weight"), torch_linear(w.weight.val())));
        }
        for (name, w) in [("gate_proj", &b.ffn.w1), ("up_proj", &b.ffn.w3), ("down_proj", &b.ffn.w2)] {
            out.push((format!("{p}.mlp.{name}.weight"), torch_linear(w.weight.val())));
        }
    }
    out.push(("model.layers.0.self_attn.rotary_emb.inv_freq".to_string(), (vec![4], vec![1.0, 0.1, 0.01, 0.001])));
    out
}

fn write_safetensors(path: &Path, tensors: &[(String, (Vec<usize>, Vec<f32>))]) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, (s, v))| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, TensorView)> =
        bytes.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, Some(HashMap::from([("format".to_string(), "pt".to_string())])), path).unwrap();
}

fn config_json(m: &ModelConfig) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": m.vocab_size,
        "hidden_size": m.d_model, "num_hidden_layers": m.n_layers, "num_attention_heads": m.n_heads,
        "num_key_value_heads": m.kv_heads(), "intermediate_size": m.ffn_hidden, "hidden_act": "silu",
        "rope_theta": m.rope_theta, "rms_norm_eps": m.norm_eps, "tie_word_embeddings": m.tie_embeddings,
        "max_position_embeddings": 2048, "initializer_range": m.init_std, "rope_scaling": null, "torch_dtype": "float32"
    })
}

/// A Llama folder of `model` (weights split over two shards when `sharded`).
fn write_llama(dir: &Path, model: &InfiniLm, config: &ModelConfig, tokenizer: &Path, sharded: bool) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("config.json"), config_json(config).to_string()).unwrap();
    fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
    let tensors = llama_tensors(model);
    if sharded {
        let (a, b) = tensors.split_at(tensors.len() / 2);
        write_safetensors(&dir.join("model-00001-of-00002.safetensors"), a);
        write_safetensors(&dir.join("model-00002-of-00002.safetensors"), b);
        let map: serde_json::Map<String, serde_json::Value> = a
            .iter()
            .map(|(n, _)| (n.clone(), "model-00001-of-00002.safetensors".into()))
            .chain(b.iter().map(|(n, _)| (n.clone(), "model-00002-of-00002.safetensors".into())))
            .collect();
        fs::write(dir.join("model.safetensors.index.json"), serde_json::json!({ "metadata": {}, "weight_map": map }).to_string()).unwrap();
    } else {
        write_safetensors(&dir.join("model.safetensors"), &tensors);
    }
}

fn test_model(tie: bool) -> (InfiniLm, ModelConfig) {
    let mut config = ModelConfig::tiny(300);
    config.n_kv_heads = Some(2);
    config.tie_embeddings = tie;
    config.segment_len = 16;
    config.gate_init = -1.5;
    config.init_std = 0.2;
    (config.init(&Device::flex()), config)
}

/// Logits of three segments (the memory written and read).
fn logits(model: &InfiniLm, config: &ModelConfig) -> Vec<f32> {
    let device = Device::flex();
    let n = config.segment_len;
    let mut memory = MemoryState::empty(config, 1, &device);
    let mut out = Vec::new();
    for s in 0..3 {
        let ids: Vec<i64> = (0..n).map(|t| ((s * n + t) * 37 % config.vocab_size) as i64).collect();
        let (l, next) = model.forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device), memory, &[]);
        memory = next;
        out.extend(l.into_data().try_into_vec::<f32>().unwrap());
    }
    out
}

fn options(config: &ModelConfig) -> ImportOptions {
    ImportOptions { segment_len: config.segment_len, memory: config.memory, gate_init: config.gate_init }
}

#[test]
fn llama_folder_imports_exactly_and_export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    common::prepared(dir.path());
    let tokenizer = dir.path().join("tok.json");
    for (tie, sharded) in [(true, false), (false, true)] {
        let (model, config) = test_model(tie);
        let expected = logits(&model, &config);
        let llama = dir.path().join(format!("llama-{tie}"));
        write_llama(&llama, &model, &config, &tokenizer, sharded);

        let ckpt = dir.path().join(format!("imported-{tie}"));
        let imported = hf::import(&llama, &ckpt, &options(&config)).unwrap();
        assert_eq!(imported.config, config, "config.json maps back to the model's config");
        let (model2, run, _, _) = checkpoint::load_for_inference(&ckpt, &Device::flex()).unwrap();
        assert_eq!(logits(&model2, &run.model), expected, "tie={tie} sharded={sharded}: imported logits differ");

        // Export: the Llama names (plus the gates), then import(export(x)) is bit-identical.
        let exported = dir.path().join(format!("exported-{tie}"));
        hf::export(&ckpt, &exported).unwrap();
        let names = hf::safetensors_names(&exported.join("model.safetensors")).unwrap();
        for (name, (shape, _)) in llama_tensors(&model).iter().filter(|(n, _)| !n.contains("inv_freq")) {
            assert_eq!(names.get(name), Some(shape), "exported {name}");
        }
        assert_eq!(names.get("model.layers.1.self_attn.memory_gate"), Some(&vec![config.n_heads]));
        assert_eq!(names.len(), llama_tensors(&model).len() - 1 + config.n_layers, "no other tensors: {names:?}");
        let again = dir.path().join(format!("again-{tie}"));
        hf::import(&exported, &again, &ImportOptions { gate_init: 0.0, ..options(&config) }).unwrap();
        let (model3, run3, _, _) = checkpoint::load_for_inference(&again, &Device::flex()).unwrap();
        assert_eq!(logits(&model3, &run3.model), expected, "import(export(x)) keeps the trained gates and every weight");
    }
}

#[test]
fn imported_model_starts_as_the_pretrained_one() {
    // With the default gate (sigmoid(−8)), a prompt within one segment (memory empty) gives the
    // local-attention-only model's logits to within the gate's 0.03%.
    let dir = tempfile::tempdir().unwrap();
    common::prepared(dir.path());
    let (model, mut config) = test_model(true);
    let llama = dir.path().join("llama");
    write_llama(&llama, &model, &config, &dir.path().join("tok.json"), false);
    let ckpt = dir.path().join("ckpt");
    hf::import(&llama, &ckpt, &ImportOptions { gate_init: hf::IMPORT_GATE_INIT, ..options(&config) }).unwrap();
    let (imported, run, _, _) = checkpoint::load_for_inference(&ckpt, &Device::flex()).unwrap();
    config.memory = MemoryKind::None;
    let mut local_only = config.init(&Device::flex());
    local_only.embedding = model.embedding.clone();
    local_only.final_norm = model.final_norm.clone();
    for (l, m) in local_only.blocks.iter_mut().zip(&model.blocks) {
        (l.attn_norm, l.ffn_norm, l.ffn) = (m.attn_norm.clone(), m.ffn_norm.clone(), m.ffn.clone());
        (l.attn.wq, l.attn.wk, l.attn.wv, l.attn.wo) = (m.attn.wq.clone(), m.attn.wk.clone(), m.attn.wv.clone(), m.attn.wo.clone());
    }
    let n = config.segment_len;
    let a = logits(&imported, &run.model)[..n * config.vocab_size].to_vec();
    let b = logits(&local_only, &config)[..n * config.vocab_size].to_vec();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    assert!(err < 2e-3, "first segment differs from the pretrained model by {err}");
    assert!(err > 0.0, "the gate should scale local attention by 1 − sigmoid(−8)");
}

fn import_error(dir: &Path, edit: impl FnOnce(&Path)) -> String {
    let (model, config) = test_model(false);
    let llama = dir.join("bad");
    let _ = fs::remove_dir_all(&llama);
    write_llama(&llama, &model, &config, &dir.join("tok.json"), true);
    edit(&llama);
    let out = dir.join("bad-out");
    let err = hf::import(&llama, &out, &options(&config)).expect_err("import should fail");
    assert!(!out.exists(), "a failed import leaves no checkpoint: {err}");
    assert!(!err.contains('\n'), "error spans lines: {err}");
    err
}

#[test]
fn bad_pretrained_folders_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    common::prepared(dir.path());
    let set = |key: &'static str, value: serde_json::Value| {
        move |p: &Path| {
            let mut c: serde_json::Value = serde_json::from_str(&fs::read_to_string(p.join("config.json")).unwrap()).unwrap();
            c[key] = value;
            fs::write(p.join("config.json"), c.to_string()).unwrap();
        }
    };
    let err = import_error(dir.path(), set("model_type", "gpt2".into()));
    assert!(err.contains("model_type"), "{err}");
    let err = import_error(dir.path(), set("rope_scaling", serde_json::json!({"type": "llama3", "factor": 8.0})));
    assert!(err.contains("rope_scaling"), "{err}");
    let err = import_error(dir.path(), set("num_key_value_heads", 3.into()));
    assert!(err.contains("n_kv_heads"), "{err}");
    let err = import_error(dir.path(), set("intermediate_size", 96.into()));
    assert!(err.contains("model.layers.0.mlp.") && err.contains("[128, 64]"), "shape mismatch: {err}");
    let err = import_error(dir.path(), set("vocab_size", 301.into()));
    assert!(err.contains("token ids") || err.contains("embed"), "tokenizer size: {err}");
    let err = import_error(dir.path(), |p| fs::remove_file(p.join("model-00002-of-00002.safetensors")).unwrap());
    assert!(err.contains("missing"), "{err}");
    let err = import_error(dir.path(), |p| {
        let f = p.join("model-00001-of-00002.safetensors");
        let bytes = fs::read(&f).unwrap();
        fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(err.contains("model-00001-of-00002"), "truncated shard: {err}");
    let err = import_error(dir.path(), |p| {
        // A shard that lost a tensor: the index is rewritten to match, as if the file were older.
        let (model, _) = test_model(false);
        let kept: Vec<_> = llama_tensors(&model).into_iter().filter(|(n, _)| n != "model.layers.1.mlp.up_proj.weight").collect();
        fs::remove_file(p.join("model.safetensors.index.json")).unwrap();
        for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            fs::remove_file(p.join(f)).unwrap();
        }
        write_safetensors(&p.join("model.safetensors"), &kept);
    });
    assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "missing tensor named: {err}");
    // The output folder is never overwritten.
    let existing = dir.path().join("existing");
    fs::create_dir_all(&existing).unwrap();
    let (_, config) = test_model(false);
    let err = hf::import(&dir.path().join("bad"), &existing, &options(&config)).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
}
