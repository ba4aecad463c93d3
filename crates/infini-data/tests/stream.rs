//! The segment stream is exact and resumable.

use std::collections::BTreeMap;
use std::sync::Arc;

use infini_data::{SegmentStream, Split, SplitData, StreamCursor};

/// Documents of varied lengths whose tokens encode (document, position) so that any mix-up shows.
fn split(lengths: &[usize]) -> Arc<SplitData> {
    let docs = lengths
        .iter()
        .enumerate()
        .map(|(d, &len)| (format!("doc{d}"), (0..len).map(|p| (d * 10_000 + p) as u32).collect()))
        .collect();
    Arc::new(SplitData::from_documents(Split::Train, docs))
}

#[test]
fn segments_reassemble_every_document_with_cross_boundary_targets() {
    let lengths = [1, 2, 7, 8, 9, 30, 64, 5];
    let data = split(&lengths);
    let (b, n) = (3, 8);
    let mut stream = SegmentStream::sequential(data.clone(), b, n).unwrap();
    let mut inputs: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut targets: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let mut steps = 0;
    while !stream.is_exhausted() {
        let seg = stream.next_segment();
        steps += 1;
        for s in 0..b {
            let Some(doc) = seg.docs[s] else {
                assert!(seg.mask[s * n..(s + 1) * n].iter().all(|&m| m == 0.0));
                continue;
            };
            assert_eq!(seg.reset[s], !inputs.contains_key(&doc), "reset flag must mark a document's first segment");
            for t in 0..n {
                let i = s * n + t;
                if seg.mask[i] > 0.0 {
                    inputs.entry(doc).or_default().push(seg.inputs[i]);
                    targets.entry(doc).or_default().push(seg.targets[i]);
                } else {
                    assert!(seg.mask[i + 1..(s + 1) * n].iter().all(|&m| m == 0.0), "padding only at the tail");
                    break;
                }
            }
        }
        assert!(steps < 100, "sequential stream never ends");
    }
    for (d, &len) in lengths.iter().enumerate() {
        let tokens = data.doc_tokens(d);
        if len < 2 {
            assert!(!inputs.contains_key(&d), "a 1-token document has nothing to predict");
            continue;
        }
        assert_eq!(inputs[&d], tokens[..len - 1], "inputs of doc {d}");
        assert_eq!(targets[&d], tokens[1..], "targets of doc {d}");
    }
}

#[test]
fn shuffled_order_is_seeded_and_changes_each_epoch() {
    let data = split(&[5; 20]);
    let firsts = |seed: u64| {
        let mut stream = SegmentStream::shuffled(data.clone(), 1, 8, seed).unwrap();
        (0..40).map(|_| stream.next_segment().docs[0].unwrap()).collect::<Vec<_>>()
    };
    let a = firsts(7);
    assert_eq!(a, firsts(7));
    assert_ne!(a, firsts(8));
    let (epoch0, epoch1) = a.split_at(20);
    let mut sorted = epoch0.to_vec();
    sorted.sort();
    assert_eq!(sorted, (0..20).collect::<Vec<_>>(), "an epoch visits every document once");
    assert_ne!(epoch0, epoch1, "each epoch has its own order");
}

#[test]
fn resuming_from_a_saved_cursor_gives_identical_batches() {
    let data = split(&[3, 40, 17, 90, 8, 8, 25, 2, 61]);
    let (b, n) = (4, 8);
    let mut straight = SegmentStream::shuffled(data.clone(), b, n, 42).unwrap();
    let expected: Vec<_> = (0..60).map(|_| straight.next_segment()).collect();

    let mut first = SegmentStream::shuffled(data.clone(), b, n, 42).unwrap();
    let mut got: Vec<_> = (0..23).map(|_| first.next_segment()).collect();
    let saved = serde_json::to_string(first.cursor()).unwrap();
    drop(first);
    let cursor: StreamCursor = serde_json::from_str(&saved).unwrap();
    let mut resumed = SegmentStream::resume(data.clone(), n, cursor).unwrap();
    got.extend((23..60).map(|_| resumed.next_segment()));
    assert_eq!(got, expected);
    assert!(resumed.cursor().epoch >= 2, "the test should cross epochs");
}

#[test]
fn resuming_on_other_data_is_refused() {
    let mut stream = SegmentStream::shuffled(split(&[10, 20]), 2, 4, 1).unwrap();
    stream.next_segment();
    let cursor = stream.cursor().clone();
    let e = SegmentStream::resume(split(&[10, 21]), 4, cursor).err().unwrap().to_string();
    assert!(e.contains("same prepared data"), "{e}");
}

#[test]
fn examples_are_k_consecutive_segments() {
    let data = split(&[100]);
    let mut a = SegmentStream::shuffled(data.clone(), 1, 8, 0).unwrap();
    let mut b = SegmentStream::shuffled(data, 1, 8, 0).unwrap();
    let example = a.next_example(4);
    assert_eq!(example.len(), 4);
    assert_eq!(example, (0..4).map(|_| b.next_segment()).collect::<Vec<_>>());
    assert_eq!(example[1].inputs[0], 8, "segments follow each other within the document");
    assert_eq!(example[0].targets[7], example[1].inputs[0], "targets cross the segment boundary");
}

#[test]
fn no_learnable_document_is_an_error() {
    let e = SegmentStream::shuffled(split(&[1, 1]), 1, 8, 0).err().unwrap().to_string();
    assert!(e.contains("no document of 2 or more tokens"), "{e}");
}
