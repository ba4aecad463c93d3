//! A real pretrained model through `infini import`: SmolLM2-135M-Instruct, converted from its
//! GGUF file by scripts/fetch-pretrained.sh, against golden values that `transformers` computed
//! from the GGUF file itself (scripts/pretrained/golden.py → tests/golden/smollm2-135m.json).
//! Prompts are shorter than one segment, so the memory is empty and only the gate (sigmoid(−8))
//! separates the imported model from the original.
//!
//! Needs `scripts/fetch-pretrained.sh smollm2-135m` first; without the folder the test says so
//! and passes, unless INFINI_REQUIRE_PRETRAINED=1 (scripts/test.sh sets it after fetching).

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{MemoryKind, MemoryState};
use infini_train::checkpoint;
use infini_train::generate::{Sampling, generate};
use infini_train::hf::{self, IMPORT_GATE_INIT, ImportOptions};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn imported_smollm2_matches_transformers_on_the_gguf_file() {
    let folder = root().join("data/pretrained/smollm2-135m");
    if !folder.join(".complete").exists() {
        assert!(
            std::env::var("INFINI_REQUIRE_PRETRAINED").as_deref() != Ok("1"),
            "{} is missing: run scripts/fetch-pretrained.sh smollm2-135m",
            folder.display()
        );
        eprintln!("skipped: {} is missing (scripts/fetch-pretrained.sh smollm2-135m fetches it)", folder.display());
        return;
    }
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(root().join("crates/infini-train/tests/golden/smollm2-135m.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let options = ImportOptions { segment_len: 256, memory: MemoryKind::Linear, gate_init: IMPORT_GATE_INIT };
    hf::import(&folder, &ckpt, &options).unwrap();
    let device = Device::flex();
    let (model, run, _, path) = checkpoint::load_for_inference(&ckpt, &device).unwrap();
    let tokenizer = checkpoint::tokenizer(&path, &run).unwrap();
    let ids_of = |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    for case in golden["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(ids, ids_of(&case["ids"]), "token ids of {text:?}");

        let n = ids.len();
        let input: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        let (logits, _) = model.forward(Tensor::<2, Int>::from_data(TensorData::new(input, [1, n]), &device), MemoryState::empty(&run.model, 1, &device), &[]);
        let v = run.model.vocab_size;
        let logits = logits.into_data().try_into_vec::<f32>().unwrap();
        let log_softmax = |row: &[f32]| -> Vec<f64> {
            let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let z = row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
            row.iter().map(|&x| x as f64 - z).collect()
        };
        if n > 1 {
            let nll: f64 = (0..n - 1).map(|t| -log_softmax(&logits[t * v..(t + 1) * v])[ids[t + 1] as usize]).sum::<f64>() / (n - 1) as f64;
            let (ppl, expected) = (nll.exp(), case["perplexity"].as_f64().unwrap());
            eprintln!("{n:3} tokens: perplexity {ppl:.4} (transformers {expected:.4}, {:+.3}%)", (ppl / expected - 1.0) * 100.0);
            assert!((ppl / expected - 1.0).abs() < 0.005, "{text:?}: perplexity {ppl} vs transformers {expected}");
        }
        let last = log_softmax(&logits[(n - 1) * v..n * v]);
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        let top: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
        assert_eq!(top[0], ids_of(&case["top5_ids"])[0], "{text:?}: most likely next token");
        for (i, (&ours, theirs)) in top.iter().zip(case["top5_logp"].as_array().unwrap()).enumerate() {
            let theirs = theirs.as_f64().unwrap();
            assert!((last[ours as usize] - theirs).abs() < 0.02, "{text:?}: top-{i} log-prob {} vs {theirs}", last[ours as usize]);
        }
        let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
        let continuation = generate(&model, &run.model, &ids, 20, &greedy, None, &device, |_| {});
        assert_eq!(continuation, ids_of(&case["greedy_ids"]), "{text:?}: greedy continuation");
    }
}
