//! Shared fixtures: a small prepared corpus and a tiny run config.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use infini_data::shards::PrepareOptions;
use infini_data::tokenizer::train_bpe;
use infini_data::{Corpus, Format, Split, prepare};
use infini_train::RunConfig;

/// Prepares a small repetitive corpus once per test and returns its folder.
pub fn prepared(dir: &Path) -> PathBuf {
    let root = dir.join("corpus");
    let words = ["the", "memory", "of", "a", "long", "book", "reads", "and", "writes", "every", "segment"];
    for i in 0..8 {
        let split = ["train", "train", "train", "train", "train", "train", "validation", "test"][i];
        let text: Vec<&str> = (0..3000).map(|w| words[(w * 3 + w / 7 + i) % words.len()]).collect();
        let path = root.join(split).join(format!("book{i}.txt"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text.join(" ")).unwrap();
    }
    let corpus = Corpus::open(&root, Format::Text, None).unwrap();
    let tok = train_bpe(corpus.documents(Split::Train).unwrap(), 300, u64::MAX, None, false, &dir.join("tok.json")).unwrap();
    let out = dir.join("prepared");
    prepare(&corpus, &tok, &out, &PrepareOptions::default()).unwrap();
    out
}

pub fn config(prepared: &Path, run: &Path, steps: u64) -> RunConfig {
    let text = format!(
        r#"
[model]
vocab_size = 300
d_model = 32
n_layers = 2
n_heads = 2
ffn_hidden = 64
segment_len = 16
memory = "linear"

[data]
prepared = "{}"
batch_size = 2
seq_len = 64

[train]
steps = {steps}
lr = 1e-2
warmup_steps = 3
optimizer = "adamw"
min_lr_ratio = 0.1
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
eps = 1e-8
grad_clip = 1.0
grad_accum = 2
tbptt_segments = 2
gate_lr_multiplier = 10.0
seed = 3
max_bad_steps = 2
log_every = 1

[eval]
every = 5
max_docs = 1
max_tokens_per_doc = 200
batch_size = 1

[checkpoint]
dir = "{}"
every = 4
keep_last = 2
"#,
        prepared.display(),
        run.display()
    );
    load_written(run, &text)
}

/// Writes a run config's `text` beside the run folder (`RUN.toml`) and loads it.
pub fn load_written(run: &Path, text: &str) -> RunConfig {
    let path = run.with_extension("toml");
    fs::write(&path, text).unwrap();
    RunConfig::load(&path, &[]).unwrap()
}

