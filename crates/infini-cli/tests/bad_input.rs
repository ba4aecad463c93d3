//! Bad input of every kind: each gives a one-line error naming the problem, a non-zero exit, no
//! panic, and leaves every existing file as it was.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

const CONFIG: &str = "[model]\nvocab_size = 300\nd_model = 32\nn_layers = 2\nn_heads = 2\nffn_hidden = 64\nsegment_len = 16\n\n\
[data]\nprepared = \"prep\"\nbatch_size = 2\nseq_len = 64\n\n[train]\nsteps = 2\nwarmup_steps = 1\n\n[eval]\nevery = 0\nmax_docs = 1\nmax_tokens_per_doc = 50\n\n\
[checkpoint]\ndir = \"run\"\n";

#[test]
fn bad_inputs_fail_cleanly_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A working setup: corpus, tokenizer, prepared data, a trained run.
    text_corpus(&d.join("corpus"), 10, 1000);
    assert!(infini_in(d, &["tokenizer", "train", "--dataset", "corpus", "--vocab-size", "300", "--out", "tok.json"]).ok);
    assert!(infini_in(d, &["tokenizer", "train", "--dataset", "corpus", "--vocab-size", "280", "--out", "tok280.json"]).ok);
    assert!(infini_in(d, &["data", "prepare", "--dataset", "corpus", "--tokenizer", "tok.json", "--out", "prep"]).ok);
    fs::write(d.join("good.toml"), CONFIG).unwrap();
    assert!(infini_in(d, &["train", "--config", "good.toml"]).ok);
    let ckpt = "run/checkpoints/step-00000002";

    // Broken inputs, written before the snapshot.
    let write = |name: &str, text: &[u8]| {
        let p = d.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    write("malformed.toml", b"[model\nvocab_size = 300\n");
    write("truncated.toml", &CONFIG.as_bytes()[..40]);
    write("unknown.toml", CONFIG.replace("steps = 2", "steps = 2\nwarmup = 3").as_bytes());
    write("wrongtype.toml", CONFIG.replace("steps = 2", "steps = \"two\"").as_bytes());
    write("negative.toml", CONFIG.replace("d_model = 32", "d_model = -32").as_bytes());
    write("shapes.toml", CONFIG.replace("n_heads = 2", "n_heads = 2\nhead_dim = 12").as_bytes());
    write("zero.toml", CONFIG.replace("n_layers = 2", "n_layers = 0").as_bytes());
    write("vocab.toml", CONFIG.replace("vocab_size = 300", "vocab_size = 512").as_bytes());
    write("wider.toml", CONFIG.replace("d_model = 32", "d_model = 64").replace("\"run\"", "\"run2\"").as_bytes());
    let mut corrupt = fs::read(d.join(ckpt).join("model.bpk")).unwrap();
    write("corrupt/model.bpk", b"not a burnpack file at all");
    for f in ["config.toml", "state.json"] {
        fs::copy(d.join(ckpt).join(f), d.join("corrupt").join(f)).unwrap();
        fs::copy(d.join(ckpt).join(f), d.join("truncated").join(f)).ok();
    }
    corrupt.truncate(corrupt.len() / 2);
    write("truncated/model.bpk", &corrupt);
    for f in ["config.toml", "state.json"] {
        fs::copy(d.join(ckpt).join(f), d.join("truncated").join(f)).unwrap();
    }
    write("empty/train/a.txt", b"");
    write("empty/validation/b.txt", b"");
    write("empty/test/c.txt", b"");
    write("binary/train/a.txt", &[0xff, 0xfe, 0x00, 0x81, 0x92]);
    write("binary/validation/b.txt", b"ok");
    write("binary/test/c.txt", b"ok");
    write("pg/metadata.csv", b"1,Title,1900\n");
    write("pg/train/1.txt", b"text");
    write("pg/validation/.keep", b"");
    write("pg/test/.keep", b"");
    write("pp/train/x.jsonl.gz", b"\x1f\x8b\x08\x00garbage");
    write("pp/dev/.keep", b"");
    write("pp/test/.keep", b"");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"{\"text\": \"fine\"}\n{\"text\": unquoted}\n").unwrap();
    write("pj/train/x.jsonl.gz", &gz.finish().unwrap());
    write("pj/dev/.keep", b"");
    write("pj/test/.keep", b"");
    write("afile", b"I am a file, not a folder");
    // Prepared data whose train shard holds a token id past the vocabulary (a flipped bit).
    for entry in ["manifest.json", "tokenizer.json", "train/00000.idx.json", "validation/00000.idx.json", "validation/00000.bin", "test/00000.idx.json", "test/00000.bin"] {
        write(&format!("badprep/{entry}"), &fs::read(d.join("prep").join(entry)).unwrap());
    }
    let mut shard = fs::read(d.join("prep/train/00000.bin")).unwrap();
    shard[2..4].copy_from_slice(&u16::MAX.to_le_bytes());
    write("badprep/train/00000.bin", &shard);

    let before = snapshot(d);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--config", "malformed.toml"], "malformed.toml:1"),
        (vec!["train", "--config", "truncated.toml"], "truncated.toml"),
        (vec!["train", "--config", "unknown.toml"], "warmup"),
        (vec!["train", "--config", "wrongtype.toml"], "steps"),
        (vec!["train", "--config", "negative.toml"], "negative.toml:3"),
        (vec!["train", "--config", "shapes.toml"], "model.head_dim"),
        (vec!["train", "--config", "zero.toml"], "model.n_layers"),
        (vec!["train", "--config", "missing.toml"], "missing.toml"),
        (vec!["train", "--config", "good.toml", "--set", "train.steps"], "KEY=VALUE"),
        (vec!["train", "--config", "good.toml", "--set", "train.nope=1"], "nope"),
        (vec!["train", "--config", "vocab.toml", "--run-dir", "run3"], "vocab_size"),
        (vec!["train", "--config", "wider.toml", "--init-from", "run"], "d_model 32 → 64"),
        (vec!["train", "--config", "good.toml", "--backend", "tpu", "--run-dir", "run4"], "tpu"),
        (vec!["train", "--resume", "corpus"], "not a run folder"),
        (vec!["train", "--config", "good.toml"], "--resume"),
        (vec!["eval", "--checkpoint", "nowhere"], "does not exist"),
        (vec!["eval", "--checkpoint", "corrupt"], "model.bpk"),
        (vec!["eval", "--checkpoint", "truncated"], "model.bpk"),
        (vec!["eval", "--checkpoint", "run", "--split", "holdout"], "holdout"),
        (vec!["eval", "--checkpoint", "run", "--data", "corpus"], "not prepared data"),
        (vec!["eval", "--checkpoint", "run", "--data", "badprep", "--split", "train"], "00000.bin holds token id 65535"),
        (vec!["data", "verify", "badprep"], "00000.bin"),
        (vec!["data", "prepare", "--dataset", "corpus", "--tokenizer", "tok280.json", "--out", "prep"], "another tokenizer"),
        (vec!["data", "prepare", "--dataset", "empty", "--tokenizer", "tok.json", "--out", "p1"], "no documents"),
        (vec!["data", "prepare", "--dataset", "binary", "--tokenizer", "tok.json", "--out", "p2"], "UTF-8"),
        (vec!["data", "prepare", "--dataset", "pg", "--tokenizer", "tok.json", "--out", "p3"], "metadata.csv:1"),
        (vec!["data", "prepare", "--dataset", "pp", "--tokenizer", "tok.json", "--out", "p4"], "gzip"),
        (vec!["data", "prepare", "--dataset", "pj", "--tokenizer", "tok.json", "--out", "p5"], "x.jsonl.gz:2"),
        (vec!["data", "prepare", "--dataset", "corpus", "--tokenizer", "tok.json", "--out", "afile/sub"], "afile"),
        (vec!["tokenizer", "train", "--dataset", "corpus", "--out", "afile/tok.json"], "afile"),
        (vec!["generate", "--checkpoint", "run", "--prompt-file", "none.txt"], "none.txt"),
        (vec!["passkey", "--checkpoint", "run", "--lengths", "2Q"], "2Q"),
        (vec!["import", "--from", "nowhere", "--out", "imported"], "nowhere"),
        (vec!["import", "--from", "corpus", "--out", "imported"], "config.json"),
        (vec!["import", "--from", "corpus", "--out", "imported", "--memory", "lstm"], "--memory lstm"),
        (vec!["export", "--checkpoint", "corrupt", "--out", "exported"], "model.bpk"),
        (vec!["export", "--checkpoint", "run", "--out", "corpus"], "already exists"),
    ];
    assert!(cases.len() >= 20);
    for (args, needle) in &cases {
        let r = infini_in(d, args);
        assert_one_line_error(&r, needle);
        assert!(snapshot(d) == before, "`infini {}` changed files", args.join(" "));
    }
}
