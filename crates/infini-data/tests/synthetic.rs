//! Synthetic long-range tasks: deterministic generation, held-out keys, exact answer spans
//! through `prepare`, answer-only loss masks and document-aligned examples in the stream.

use std::sync::Arc;

use infini_data::shards::PrepareOptions;
use infini_data::synthetic::{SyntheticSpec, Task, is_heldout_key};
use infini_data::tokenizer::train_bpe;
use infini_data::{Corpus, PreparedData, SegmentStream, Split, SplitData, prepare};

fn spec(task: Task, seed: u64) -> SyntheticSpec {
    SyntheticSpec { task, seed, train_docs: 60, heldout_docs: 8, min_tokens: 100, max_tokens: 200, digits: 5, pairs: 3, end_depth_share: 0.0, filler: None }
}

fn numbers(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|s| s.len() >= 2).map(|s| s.parse().unwrap()).collect()
}

#[test]
fn generation_is_deterministic_and_keeps_evaluation_keys_out_of_training() {
    for task in [Task::Passkey, Task::Recall] {
        let a = spec(task, 3).documents(Split::Train, &|t| t.len() / 4);
        assert_eq!(a, spec(task, 3).documents(Split::Train, &|t| t.len() / 4));
        assert_ne!(a, spec(task, 4).documents(Split::Train, &|t| t.len() / 4));
        for split in Split::ALL {
            for doc in spec(task, 3).documents(split, &|t| t.len() / 4) {
                let keys = numbers(&doc.text);
                assert!(!keys.is_empty());
                assert!(keys.iter().all(|&k| is_heldout_key(k) == (split != Split::Train)), "{split}: {keys:?}");
                // Every answer piece is a key that the text wrote earlier, or the full stop that
                // ends the answer.
                let mut start = 0;
                for span in &doc.spans {
                    let piece = &doc.text[start..span.end];
                    if span.answer && piece != "." {
                        let key = numbers(piece)[0];
                        assert!(doc.text[..start].contains(&key.to_string()), "answer {key} before it was written");
                    }
                    start = span.end;
                }
                assert_eq!(start, doc.text.len());
            }
        }
    }
}

#[test]
fn end_depth_share_puts_keys_at_the_ends_and_changes_nothing_else() {
    use infini_data::synthetic::{PASSKEY_INSTRUCTION, PASSKEY_QUESTION};
    let docs = |share: f64| {
        let spec = SyntheticSpec { train_docs: 400, end_depth_share: share, ..spec(Task::Passkey, 5) };
        spec.validate().unwrap();
        spec.documents(Split::Train, &|t| t.len() / 4)
    };
    // (key first after the instruction, key right before the question) per document.
    let ends = |docs: &[infini_data::corpus::Document]| -> (usize, usize) {
        let first = docs.iter().filter(|d| d.text[PASSKEY_INSTRUCTION.len()..].starts_with(" The pass key is")).count();
        let last = docs.iter().filter(|d| d.text.contains(&format!("is the pass key.{PASSKEY_QUESTION}"))).count();
        (first, last)
    };
    let (uniform, half) = (docs(0.0), docs(0.5));
    // A card without the key gets a share of 0.
    let card: SyntheticSpec = toml::from_str("task = \"passkey\"\nmin_tokens = 100\nmax_tokens = 200").unwrap();
    assert_eq!(card.end_depth_share, 0.0);
    // ... and the description that fingerprints prepared data stays what it was without the key.
    assert!(!card.describe().contains("end_depth_share"), "{}", card.describe());
    let with = SyntheticSpec { end_depth_share: 0.5, ..card.clone() };
    assert!(with.describe().contains("end_depth_share: 0.5"));
    // The same keys and lengths, the depths moved: about a quarter of the keys at each end.
    for (a, b) in uniform.iter().zip(&half) {
        assert_eq!(numbers(&a.text), numbers(&b.text));
        assert_eq!(a.text.len(), b.text.len());
    }
    let (u0, u1) = ends(&uniform);
    let (h0, h1) = ends(&half);
    // Uniform depths put a key at an end in about 1 of 2 × repeats (2-7 here) documents; a share
    // of 0.5 adds a quarter of the others at each end.
    assert!(u0 < 80 && u1 < 80, "uniform depths: {u0} and {u1} of 400 at the ends");
    assert!(h0 >= u0 + 60 && h1 >= u1 + 60 && h0 < 200 && h1 < 200, "share 0.5: {h0} and {h1} of 400 at the ends");

    let bad = SyntheticSpec { end_depth_share: 1.5, ..spec(Task::Passkey, 5) };
    assert!(bad.validate().unwrap_err().to_string().contains("end_depth_share"));
    let recall = SyntheticSpec { end_depth_share: 0.2, ..spec(Task::Recall, 5) };
    assert!(recall.validate().unwrap_err().to_string().contains("passkey"));
}

#[test]
fn prepared_answers_are_the_key_tokens_and_lengths_are_in_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::synthetic(dir.path(), spec(Task::Passkey, 1)).unwrap();
    let tok = train_bpe(corpus.documents(Split::Train).unwrap(), 300, u64::MAX, None, true, &dir.path().join("t.json")).unwrap();
    let out = dir.path().join("prepared");
    prepare(&corpus, &tok, &out, &PrepareOptions::default()).unwrap();
    let split = PreparedData::open(&out).unwrap().split(Split::Test).unwrap();
    assert!(split.has_answers());
    // Lengths are whole fillers: within one filler sentence of the length drawn.
    let filler = tok.encode(infini_data::synthetic::PASSKEY_FILLER).unwrap().len() as u64;
    for i in 0..split.len() {
        let doc = split.doc(i);
        assert!((100..=200 + filler).contains(&doc.len), "document of {} tokens for 100-200", doc.len);
        // Two answers: the key's second mention (" " + one token per digit) and the answer
        // after the question, the same with its full stop (the model learns where the key ends).
        assert_eq!(doc.answers.len(), 2);
        let ids = split.doc_tokens(i);
        let texts: Vec<String> = doc.answers.iter().map(|[a, b]| tok.decode(&ids[*a as usize..*b as usize]).unwrap()).collect();
        assert_eq!(format!("{}.", texts[0]), texts[1]);
        assert_eq!(texts[0].trim().len(), 5);
        assert!(texts[0].trim().chars().all(|c| c.is_ascii_digit()));
        assert_eq!(doc.answers[1][1] as usize + 1, ids.len(), "the answer and its full stop, then <|endoftext|>, end the document");
        assert_eq!(ids.last(), Some(&0));
        let prompt = tok.decode(&ids[..doc.answers[1][0] as usize]).unwrap();
        assert!(prompt.ends_with("What is the pass key? The pass key is"));
    }
}

#[test]
fn filler_from_a_corpus_is_its_own_split_text_and_keeps_answers_and_lengths() {
    let dir = tempfile::tempdir().unwrap();
    // A text-layout corpus whose splits use different words, next to the dataset card.
    let books = dir.path().join("books");
    for (split, word) in [("train", "alpha"), ("validation", "beta"), ("test", "gamma")] {
        std::fs::create_dir_all(books.join(split)).unwrap();
        let text: String = (0..3000).map(|i| format!("{word}{} ", i % 7)).collect();
        std::fs::write(books.join(split).join("a.txt"), text).unwrap();
    }
    let card = dir.path().join("card.toml");
    let words = |t: &str| t.len().div_ceil(4);
    for task in [Task::Passkey, Task::Recall] {
        let spec = SyntheticSpec { filler: Some("books".into()), ..spec(task, 2) };
        spec.validate().unwrap();
        assert!(spec.describe().contains("filler: Some(\"books\")"));
        let corpus = Corpus::synthetic(&card, spec.clone()).unwrap();
        assert_eq!(corpus.files(Split::Test).unwrap().len(), 1, "the filler's files fingerprint the prepared data");
        for (split, word, others) in [(Split::Train, "alpha", ["beta", "gamma"]), (Split::Test, "gamma", ["alpha", "beta"])] {
            let docs: Vec<_> = corpus.documents_sized(split, &words).unwrap().map(Result::unwrap).collect();
            let fixed = spec.documents(split, &words);
            assert_eq!(docs.len(), fixed.len());
            for (doc, plain) in docs.iter().zip(&fixed) {
                assert!(doc.text.contains(word), "{split}: no filler from its own split");
                assert!(others.iter().all(|w| !doc.text.contains(w)), "{split}: filler from another split");
                assert!(!doc.text.contains("The grass is green"));
                // The same keys as with the fixed filler (the filler's place is a stream of its own), in
                // a document of about the length drawn.
                assert_eq!(numbers(&doc.text), numbers(&plain.text));
                let len = words(&doc.text);
                assert!((90..=230).contains(&len), "{split}: {len} tokens for 100-200");
                // Answers are still exactly the keys, each written earlier.
                let mut start = 0;
                for span in &doc.spans {
                    let piece = &doc.text[start..span.end];
                    if span.answer && piece != "." {
                        let key = numbers(piece)[0];
                        assert!(doc.text[..start].contains(&key.to_string()));
                    }
                    start = span.end;
                }
                assert_eq!(start, doc.text.len());
            }
            // Filler from different places: not every document the same text.
            assert!(docs.windows(2).any(|w| w[0].text != w[1].text));
        }
    }
    // A missing filler folder is a one-line error naming the key.
    let spec = SyntheticSpec { filler: Some("nowhere".into()), ..spec(Task::Recall, 2) };
    let e = Corpus::synthetic(&card, spec).unwrap().documents(Split::Train).err().expect("no filler corpus");
    assert!(e.to_string().contains("synthetic.filler") && e.to_string().contains("nowhere"), "{e}");
}

#[test]
fn answer_masks_and_document_aligned_examples() {
    // Two documents of 10 and 5 tokens; answers at tokens 6..8 and 3..4.
    let docs = vec![
        ("a".to_string(), (100..110).collect::<Vec<u32>>(), vec![[6u64, 8u64]]),
        ("b".to_string(), (200..205).collect(), vec![[3, 4]]),
    ];
    let split = Arc::new(SplitData::from_answered(Split::Train, docs));
    // answers only: the target of position i is token i + 1.
    let mut stream = SegmentStream::sequential(split.clone(), 1, 4).unwrap().answers_only(true).unwrap();
    let mut masked = Vec::new();
    while !stream.is_exhausted() {
        let s = stream.next_segment();
        masked.extend(s.targets.iter().zip(&s.mask).filter(|(_, m)| **m > 0.0).map(|(t, _)| *t));
    }
    assert_eq!(masked, vec![106, 107, 203]);

    // Aligned: every example starts a document at its first token and pads after its end.
    let mut stream = SegmentStream::shuffled(split.clone(), 2, 4, 9).unwrap();
    for _ in 0..5 {
        let example = stream.next_aligned_example(3);
        for s in 0..2 {
            assert!(example[0].reset[s]);
            let first = example[0].inputs[s * 4];
            assert!(first == 100 || first == 200, "example starts mid-document at {first}");
            let inputs: Vec<u32> = example.iter().flat_map(|seg| seg.inputs[s * 4..s * 4 + 4].to_vec()).collect();
            let len = if first == 100 { 9 } else { 4 };
            assert!(inputs[..len].iter().zip(first..).all(|(a, b)| *a == b));
            assert!(inputs[len..].iter().all(|&t| t == 0), "padding after the end: {inputs:?}");
            assert!(example[1..].iter().all(|seg| !seg.reset[s]));
        }
    }

    let plain = Arc::new(SplitData::from_documents(Split::Train, vec![("c".into(), vec![1, 2, 3])]));
    let e = SegmentStream::sequential(plain, 1, 4).unwrap().answers_only(true).err().expect("no answers to train on");
    assert!(e.to_string().contains("loss_on"), "{e}");
}
