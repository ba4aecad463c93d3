//! Tokenizer training, `prepare` (exactness, idempotence, resume, mismatch errors) on fixtures.

use std::fs;
use std::path::Path;

use infini_data::shards::PrepareOptions;
use infini_data::tokenizer::train_bpe;
use infini_data::{Corpus, Format, PreparedData, Split, Tokenizer, prepare};

/// A text-folder corpus with train/validation/test subfolders of pseudo-English.
fn corpus(root: &Path, books: usize, words: usize) -> Corpus {
    let vocab = ["the", "memory", "of", "a", "long", "book", "attention", "segment", "reads", "and", "writes", "café"];
    for i in 0..books {
        let split = match i % 5 {
            3 => "validation",
            4 => "test",
            _ => "train",
        };
        let text: Vec<&str> = (0..words).map(|w| vocab[(w * 7 + i * 3 + w / 5) % vocab.len()]).collect();
        let path = root.join(split).join(format!("book{i:03}.txt"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text.join(" ") + ".\n").unwrap();
    }
    Corpus::open(root, Format::Text, None).unwrap()
}

fn tokenizer(corpus: &Corpus, dir: &Path) -> Tokenizer {
    train_bpe(corpus.documents(Split::Train).unwrap(), 300, u64::MAX, None, false, &dir.join("tok.json")).unwrap()
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for split in ["train", "validation", "test"] {
        for e in fs::read_dir(dir.join(split)).unwrap() {
            let p = e.unwrap().path();
            files.push((p.strip_prefix(dir).unwrap().display().to_string(), fs::read(&p).unwrap()));
        }
    }
    files.push(("manifest.json".into(), fs::read(dir.join("manifest.json")).unwrap()));
    files.sort();
    files
}

#[test]
fn bpe_round_trips_text() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&dir.path().join("c"), 10, 300);
    let tok = tokenizer(&corpus, dir.path());
    assert_eq!(tok.vocab_size(), 300);
    assert_eq!(tok.token_id(infini_data::tokenizer::END_OF_TEXT), Some(0));
    let text = "the memory of a café, and unseen wörds ∑ 42";
    let ids = tok.encode(text).unwrap();
    assert!(ids.len() < text.len(), "BPE should merge something");
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert!(Tokenizer::load(&dir.path().join("missing.json")).is_err());
    fs::write(dir.path().join("bad.json"), "{not json").unwrap();
    let e = Tokenizer::load(&dir.path().join("bad.json")).err().unwrap().to_string();
    assert!(e.contains("bad.json") && !e.contains('\n'), "{e}");
}

#[test]
fn prepared_tokens_equal_the_tokenizer_output_and_rerun_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&dir.path().join("c"), 15, 400);
    let tok = tokenizer(&corpus, dir.path());
    let out = dir.path().join("prepared");
    let options = PrepareOptions { shard_tokens: 500, batch_documents: 3 };
    let manifest = prepare(&corpus, &tok, &out, &options).unwrap();
    assert_eq!(manifest.vocab_size, 300);
    assert_eq!(manifest.end_of_text, Some(0));
    assert_eq!(manifest.splits[&Split::Train].documents, 9);
    assert!(manifest.splits[&Split::Train].shards > 2, "small shards expected");

    let data = PreparedData::open(&out).unwrap();
    for split in Split::ALL {
        let docs: Vec<_> = corpus.documents(split).unwrap().map(Result::unwrap).collect();
        let prepared = data.split(split).unwrap();
        assert_eq!(prepared.len(), docs.len());
        for (i, doc) in docs.iter().enumerate() {
            let mut want = tok.encode(&doc.text).unwrap();
            want.push(0); // <|endoftext|> ends every document
            assert_eq!(prepared.doc_tokens(i), want, "{split} doc {i}");
            assert_eq!(prepared.doc(i).words, 400);
            assert_eq!(prepared.doc(i).bytes, doc.text.len() as u64);
        }
    }
    let before = snapshot(&out);
    prepare(&corpus, &tok, &out, &options).unwrap();
    assert_eq!(snapshot(&out), before, "re-running prepare changed the output");
}

#[test]
fn interrupted_prepare_resumes_to_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&dir.path().join("c"), 15, 400);
    let tok = tokenizer(&corpus, dir.path());
    let out = dir.path().join("prepared");
    let options = PrepareOptions { shard_tokens: 500, batch_documents: 2 };
    let manifest = prepare(&corpus, &tok, &out, &options).unwrap();
    let complete = snapshot(&out);

    // Recreate the state a kill leaves: the run's prepare.json, no manifest, some shards missing,
    // one shard written without its index, and a stray temporary file.
    let state = serde_json::json!({
        "format_version": manifest.format_version,
        "tokenizer_hash": manifest.tokenizer_hash,
        "source": manifest.source,
        "source_fingerprint": manifest.source_fingerprint,
        "shard_tokens": manifest.shard_tokens,
    });
    fs::write(out.join("prepare.json"), state.to_string()).unwrap();
    fs::remove_file(out.join("manifest.json")).unwrap();
    fs::remove_file(out.join("train/00002.idx.json")).unwrap();
    for e in fs::read_dir(out.join("train")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() > "00003" {
            fs::remove_file(&p).unwrap();
        }
    }
    fs::remove_dir_all(out.join("test")).unwrap();
    fs::write(out.join("train/.00003.bin.tmp-1"), "torn").unwrap();
    assert!(PreparedData::open(&out).err().unwrap().to_string().contains("interrupted"));

    prepare(&corpus, &tok, &out, &options).unwrap();
    assert!(!out.join("train/.00003.bin.tmp-1").exists(), "stale temporary file left behind");
    assert_eq!(snapshot(&out), complete);
}

#[test]
fn another_tokenizer_or_corpus_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let corpus_a = corpus(&dir.path().join("a"), 10, 200);
    let tok = tokenizer(&corpus_a, dir.path());
    let out = dir.path().join("prepared");
    prepare(&corpus_a, &tok, &out, &PrepareOptions::default()).unwrap();

    let other = train_bpe(corpus_a.documents(Split::Train).unwrap(), 280, u64::MAX, None, false, &dir.path().join("t2.json")).unwrap();
    let e = prepare(&corpus_a, &other, &out, &PrepareOptions::default()).err().unwrap().to_string();
    assert!(e.contains("another tokenizer") && !e.contains('\n'), "{e}");

    let corpus_b = corpus(&dir.path().join("b"), 12, 200);
    let e = prepare(&corpus_b, &tok, &out, &PrepareOptions::default()).err().unwrap().to_string();
    assert!(e.contains("different corpus"), "{e}");

    fs::write(dir.path().join("stuff.txt"), "x").unwrap();
    let e = prepare(&corpus_a, &tok, dir.path(), &PrepareOptions::default()).err().unwrap().to_string();
    assert!(e.contains("not a prepared-data folder"), "{e}");
}

#[test]
fn empty_corpus_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("empty");
    for s in ["train", "validation", "test"] {
        fs::create_dir_all(root.join(s)).unwrap();
    }
    let corpus = Corpus::open(&root, Format::Text, None).unwrap();
    let e = train_bpe(corpus.documents(Split::Train).unwrap(), 300, u64::MAX, None, false, &dir.path().join("t.json"));
    assert!(e.err().unwrap().to_string().contains("too little text"));
    let full = self::corpus(&dir.path().join("full"), 5, 100);
    let tok = tokenizer(&full, dir.path());
    let e = prepare(&corpus, &tok, &dir.path().join("out"), &PrepareOptions::default()).err().unwrap().to_string();
    assert!(e.contains("no documents"), "{e}");
}

#[test]
fn corrupt_shard_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&dir.path().join("c"), 10, 200);
    let tok = tokenizer(&corpus, dir.path());
    let out = dir.path().join("prepared");
    prepare(&corpus, &tok, &out, &PrepareOptions::default()).unwrap();
    let bin = out.join("train/00000.bin");
    let bytes = fs::read(&bin).unwrap();
    fs::write(&bin, &bytes[..bytes.len() - 2]).unwrap();
    let e = PreparedData::open(&out).unwrap().split(Split::Train).err().unwrap().to_string();
    assert!(e.contains("00000.bin") && e.contains("corrupt"), "{e}");
}

#[test]
fn corrupt_shards_and_old_formats_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(&dir.path().join("c"), 10, 300);
    let tok = tokenizer(&corpus, dir.path());
    let out = dir.path().join("prepared");
    prepare(&corpus, &tok, &out, &PrepareOptions::default()).unwrap();
    let report = PreparedData::open(&out).unwrap().verify().unwrap();
    assert_eq!(report.len(), 3, "{report:?}");
    let bin = out.join("train/00000.bin");
    let good = fs::read(&bin).unwrap();
    let one_line = |e: String, wants: &[&str]| {
        assert!(!e.contains('\n') && wants.iter().all(|w| e.contains(w)), "{e}");
    };

    // An id inside the vocabulary but changed: only the hash sees it.
    let mut flipped = good.clone();
    flipped[10] ^= 1;
    fs::write(&bin, &flipped).unwrap();
    let data = PreparedData::open(&out).unwrap();
    assert!(data.split(Split::Train).is_ok(), "an in-range id passes the fast check");
    one_line(data.verify().err().unwrap().to_string(), &["00000.bin", "SHA-256"]);

    // An id ≥ the vocabulary size: refused when the split is opened, naming the file.
    let mut bad = good.clone();
    bad[10..12].copy_from_slice(&(300u16 + 7).to_le_bytes());
    fs::write(&bin, &bad).unwrap();
    one_line(PreparedData::open(&out).unwrap().split(Split::Train).err().unwrap().to_string(), &["00000.bin", "307", "300"]);

    // A truncated shard.
    fs::write(&bin, &good[..good.len() - 2]).unwrap();
    one_line(PreparedData::open(&out).unwrap().split(Split::Train).err().unwrap().to_string(), &["00000.bin", "corrupt"]);
    fs::write(&bin, &good).unwrap();

    // A folder of the previous format (documents without <|endoftext|>): opening it says to
    // prepare again; prepare moves it aside intact and makes a readable one.
    let manifest = out.join("manifest.json");
    let text = fs::read_to_string(&manifest).unwrap().replace("\"format_version\": 2", "\"format_version\": 1");
    fs::write(&manifest, &text).unwrap();
    one_line(PreparedData::open(&out).err().unwrap().to_string(), &["format 1", "infini data prepare"]);
    prepare(&corpus, &tok, &out, &PrepareOptions::default()).unwrap();
    let aside = dir.path().join("prepared.format-1");
    assert_eq!(fs::read_to_string(aside.join("manifest.json")).unwrap(), text, "the old folder is kept as it was");
    assert_eq!(fs::read(aside.join("train/00000.bin")).unwrap(), good);
    PreparedData::open(&out).unwrap().verify().unwrap();
}
