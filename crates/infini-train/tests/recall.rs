//! The memory must carry information across segments: a tiny model with Infini-attention
//! learns an across-segment recall task (a code written in the first segment, asked for in the
//! last) that the same model without memory cannot, measured on the answer tokens of held-out
//! documents and codes. A change that disconnects the memory (a detach, a lost state, a gate
//! stuck at 0) makes the two runs equal and fails this test.

mod common;

use std::path::Path;

use burn::tensor::Device;
use infini_data::shards::PrepareOptions;
use infini_data::synthetic::{SyntheticSpec, Task};
use infini_data::tokenizer::train_bpe;
use infini_data::{Corpus, Split, prepare};
use infini_train::{RunConfig, RunOptions, Start, train};

fn config(prepared: &Path, run: &Path, vocab: usize, memory: &str, steps: u64) -> RunConfig {
    let text = format!(
        r#"
[model]
vocab_size = {vocab}
d_model = 64
n_layers = 2
n_heads = 4
ffn_hidden = 128
segment_len = 32
memory = "{memory}"

[data]
prepared = "{}"
batch_size = 8
seq_len = 192
align_documents = true
loss_on = "answers"

[train]
steps = {steps}
lr = 3e-3
warmup_steps = 20
weight_decay = 0.0
seed = 0

[eval]
every = 0
max_docs = 64
batch_size = 8

[checkpoint]
dir = "{}"
every = 0
keep_last = 1
"#,
        prepared.display(),
        run.display()
    );
    common::load_written(run, &text)
}

#[test]
fn memory_learns_across_segment_recall_that_local_attention_cannot() {
    let dir = tempfile::tempdir().unwrap();
    // One 3-digit code per document, written in the first of its 5-6 segments of 32 tokens and
    // asked for in the last; its second mention (right after the first) is also an answer, one
    // that local attention can copy, so both models learn to copy digits.
    let spec = SyntheticSpec {
        task: Task::Recall,
        seed: 1,
        train_docs: 2000,
        heldout_docs: 64,
        min_tokens: 140,
        max_tokens: 180,
        digits: 3,
        pairs: 1,
        end_depth_share: 0.0,
        filler: None,
    };
    let corpus = Corpus::synthetic(dir.path(), spec).unwrap();
    let tok = train_bpe(corpus.documents(Split::Train).unwrap(), 400, u64::MAX, None, true, &dir.path().join("tok.json")).unwrap();
    let data = dir.path().join("prepared");
    prepare(&corpus, &tok, &data, &PrepareOptions::default()).unwrap();

    let run = |memory: &str, steps: u64| {
        let run_dir = dir.path().join(memory);
        let options =
            RunOptions { run_dir: run_dir.clone(), device: Device::flex(), replicas: Vec::new(), max_steps_this_run: None, poison_steps: None };
        let summary = train(config(&data, &run_dir, tok.vocab_size(), memory, steps), Start::Fresh, options).unwrap();
        summary.validation.expect("a validation split").loss
    };
    // Without memory the question's digits stay at chance however long it trains (nothing in
    // its segment tells them); 300 steps learn the copy and the format.
    let with_memory = run("linear", 700);
    let without = run("none", 300);
    eprintln!("answer-token loss on held-out documents: memory {with_memory:.3}, none {without:.3} nats");
    // Half of the answer tokens (the question's) are at chance without memory: 3 digits of 10
    // and a space, about 0.86 nats per answer token over both mentions.
    assert!(without > 0.7, "without memory the question's digits should be at chance, loss {without:.3}");
    assert!(
        with_memory < without - 0.15,
        "the memory should recall the code across segments: loss {with_memory:.3} vs {without:.3} without memory"
    );
}
