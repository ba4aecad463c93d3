//! The segment stream: B parallel streams of documents cut into segments of N tokens.
//!
//! Each stream reads one document at a time, segment after segment; when it ends, the stream
//! takes the next document of a seeded shuffled order (a new order each epoch) and raises its
//! reset flag so the model empties that stream's memory. Targets are the next tokens, so the
//! target of a segment's last position is the first token of the next segment. The tail of a
//! document is padded (mask 0). The [`StreamCursor`] serializes the whole position, so a run
//! resumed from it yields exactly the batches the uninterrupted run would have.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, fail};
use crate::shards::SplitData;

/// Where one stream stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPos {
    /// Document being read, `None` before the first or after the last (sequential mode).
    pub doc: Option<usize>,
    /// Index of the next input token within the document.
    pub offset: usize,
}

/// The complete, serializable position of a [`SegmentStream`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    /// Seed of the shuffled order (`None`: documents in index order, each read once).
    pub seed: Option<u64>,
    /// Completed passes over the documents.
    pub epoch: u64,
    /// Position, in the current epoch's order, of the next document to hand out.
    pub next: usize,
    /// One entry per stream.
    pub streams: Vec<StreamPos>,
    /// Documents in the split, to refuse resuming on different data.
    pub documents: usize,
    /// Tokens in the split, likewise.
    pub tokens: u64,
}

/// One segment for every stream, flattened row-major as `[B, N]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentBatch {
    /// Streams B.
    pub batch: usize,
    /// Tokens per segment N.
    pub segment_len: usize,
    /// Input ids `[B·N]` (0 where padded).
    pub inputs: Vec<u32>,
    /// Next-token targets `[B·N]` (0 where padded).
    pub targets: Vec<u32>,
    /// 1 where the target is real, 0 for padding `[B·N]`.
    pub mask: Vec<f32>,
    /// Per stream: this segment starts a new document (empty its memory first).
    pub reset: Vec<bool>,
    /// Per stream: the document this segment comes from.
    pub docs: Vec<Option<usize>>,
}

impl SegmentBatch {
    /// The sub-batch of streams `range` (for splitting a batch across devices).
    pub fn streams(&self, range: std::ops::Range<usize>) -> SegmentBatch {
        let n = self.segment_len;
        let rows = range.start * n..range.end * n;
        SegmentBatch {
            batch: range.len(),
            segment_len: n,
            inputs: self.inputs[rows.clone()].to_vec(),
            targets: self.targets[rows.clone()].to_vec(),
            mask: self.mask[rows].to_vec(),
            reset: self.reset[range.clone()].to_vec(),
            docs: self.docs[range].to_vec(),
        }
    }

    /// Number of real (unpadded) targets.
    pub fn num_targets(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }
}

/// SplitMix64: a tiny generator whose sequence is fixed forever (unlike library RNGs).
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A permutation of `items` determined by `(seed, epoch)` alone (Fisher–Yates).
pub fn shuffled(items: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = items.to_vec();
    let mut state = seed ^ epoch.wrapping_mul(0xa076_1d64_78bd_642f);
    for i in (1..order.len()).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// B streams over a split's documents, cut into segments.
pub struct SegmentStream {
    split: Arc<SplitData>,
    segment_len: usize,
    /// Documents with at least one target (≥ 2 tokens), in index order.
    eligible: Vec<usize>,
    order: Vec<usize>,
    cursor: StreamCursor,
    /// Read at most this many tokens of each document (evaluation on long books).
    limit: Option<usize>,
    /// Put the mask (the loss) on answer tokens only.
    answers_only: bool,
    /// While a document-aligned example is being cut: streams whose document has ended pad
    /// instead of starting the next one.
    hold: bool,
}

impl SegmentStream {
    /// Streams that walk the documents in a shuffled order, a new one every epoch, forever.
    pub fn shuffled(split: Arc<SplitData>, batch: usize, segment_len: usize, seed: u64) -> Result<Self> {
        Self::new(split, batch, segment_len, Some(seed))
    }

    /// Streams that read every document once, in index order (for evaluation), then go idle.
    pub fn sequential(split: Arc<SplitData>, batch: usize, segment_len: usize) -> Result<Self> {
        Self::new(split, batch, segment_len, None)
    }

    /// Streams that read the given documents once, in the given order, at most `limit` tokens
    /// of each, then go idle (for evaluation on a subset).
    pub fn documents(
        split: Arc<SplitData>,
        batch: usize,
        segment_len: usize,
        docs: Vec<usize>,
        limit: Option<usize>,
    ) -> Result<Self> {
        if let Some(&bad) = docs.iter().find(|&&d| d >= split.len()) {
            return fail(format!("document {bad} is out of range: the {} split has {}", split.split, split.len()));
        }
        let mut stream = Self::new(split, batch, segment_len, None)?;
        stream.order = docs.into_iter().filter(|&d| stream.split.doc(d).len >= 2).collect();
        stream.limit = limit;
        Ok(stream)
    }

    fn new(split: Arc<SplitData>, batch: usize, segment_len: usize, seed: Option<u64>) -> Result<Self> {
        if batch == 0 || segment_len == 0 {
            return fail(format!("batch ({batch}) and segment length ({segment_len}) must be at least 1"));
        }
        let cursor = StreamCursor {
            seed,
            epoch: 0,
            next: 0,
            streams: vec![StreamPos { doc: None, offset: 0 }; batch],
            documents: split.len(),
            tokens: split.total_tokens(),
        };
        Self::resume(split, segment_len, cursor)
    }

    /// Continues exactly where `cursor` was taken, refusing a split that has changed.
    pub fn resume(split: Arc<SplitData>, segment_len: usize, cursor: StreamCursor) -> Result<Self> {
        if cursor.documents != split.len() || cursor.tokens != split.total_tokens() {
            return fail(format!(
                "the saved data position is for {} documents / {} tokens but the {} split has {} / {}: resume with the same prepared data",
                cursor.documents,
                cursor.tokens,
                split.split,
                split.len(),
                split.total_tokens()
            ));
        }
        let eligible: Vec<usize> = (0..split.len()).filter(|&i| split.doc(i).len >= 2).collect();
        if eligible.is_empty() {
            return fail(format!("the {} split has no document of 2 or more tokens to learn from", split.split));
        }
        let order = match cursor.seed {
            Some(seed) => shuffled(&eligible, seed, cursor.epoch),
            None => eligible.clone(),
        };
        if cursor.next > order.len() || cursor.streams.iter().any(|s| s.doc.is_some_and(|d| d >= split.len())) {
            return fail("the saved data position is out of range for this split: resume with the same prepared data");
        }
        Ok(Self { split, segment_len, eligible, order, cursor, limit: None, answers_only: false, hold: false })
    }

    /// Masks every target but the answer tokens of the documents (synthetic tasks), so that
    /// the loss falls on the answers alone; refused for a split without answers.
    pub fn answers_only(mut self, on: bool) -> Result<Self> {
        if on && !self.split.has_answers() {
            return fail(format!(
                "the {} split has no answer tokens (only synthetic datasets mark answers): use data.loss_on = \"all\"",
                self.split.split
            ));
        }
        self.answers_only = on;
        Ok(self)
    }

    /// The current position, to save in a checkpoint.
    pub fn cursor(&self) -> &StreamCursor {
        &self.cursor
    }

    /// Number of streams B.
    pub fn batch(&self) -> usize {
        self.cursor.streams.len()
    }

    /// The next document in order, starting a new epoch when shuffled; `None` when a
    /// sequential stream has handed out every document.
    fn next_document(&mut self) -> Option<usize> {
        if self.cursor.next == self.order.len() {
            let seed = self.cursor.seed?;
            self.cursor.epoch += 1;
            self.cursor.next = 0;
            self.order = shuffled(&self.eligible, seed, self.cursor.epoch);
        }
        let doc = self.order[self.cursor.next];
        self.cursor.next += 1;
        Some(doc)
    }

    /// True once a sequential stream has read every document to its end.
    pub fn is_exhausted(&self) -> bool {
        self.cursor.seed.is_none()
            && self.cursor.next == self.order.len()
            && self.cursor.streams.iter().all(|s| self.remaining(s) == 0)
    }

    /// Targets left in the stream's current document.
    fn remaining(&self, pos: &StreamPos) -> usize {
        let len = |d: usize| (self.split.doc(d).len as usize).min(self.limit.unwrap_or(usize::MAX));
        pos.doc.map_or(0, |d| len(d).saturating_sub(1).saturating_sub(pos.offset))
    }

    /// The next segment of every stream.
    pub fn next_segment(&mut self) -> SegmentBatch {
        let (b, n) = (self.batch(), self.segment_len);
        let mut out = SegmentBatch {
            batch: b,
            segment_len: n,
            inputs: vec![0; b * n],
            targets: vec![0; b * n],
            mask: vec![0.0; b * n],
            reset: vec![false; b],
            docs: vec![None; b],
        };
        for s in 0..b {
            if self.remaining(&self.cursor.streams[s]) == 0 && !self.hold {
                let doc = self.next_document();
                self.cursor.streams[s] = StreamPos { doc, offset: 0 };
                out.reset[s] = doc.is_some();
            }
            let pos = self.cursor.streams[s].clone();
            let Some(doc) = pos.doc else { continue };
            let take = self.remaining(&pos).min(n);
            let tokens = self.split.tokens(doc, pos.offset..pos.offset + take + 1);
            out.inputs[s * n..s * n + take].copy_from_slice(&tokens[..take]);
            out.targets[s * n..s * n + take].copy_from_slice(&tokens[1..]);
            if self.answers_only {
                // Target i of this segment is token `offset + i + 1` of the document.
                for [a, b] in &self.split.doc(doc).answers {
                    let (a, b) = (*a as usize, *b as usize);
                    let from = a.saturating_sub(pos.offset + 1).min(take);
                    let to = b.saturating_sub(pos.offset + 1).min(take);
                    out.mask[s * n + from..s * n + to].fill(1.0);
                }
            } else {
                out.mask[s * n..s * n + take].fill(1.0);
            }
            out.docs[s] = Some(doc);
            self.cursor.streams[s].offset += take;
        }
        out
    }

    /// A training example of `k` consecutive segments per stream (L = k·N tokens).
    pub fn next_example(&mut self, k: usize) -> Vec<SegmentBatch> {
        (0..k).map(|_| self.next_segment()).collect()
    }

    /// A training example of `k` segments per stream in which every stream starts a new
    /// document, reads it from its start (at most k·N tokens; the rest is skipped) and pads
    /// once it ends: so the example spans whole documents, key and question together.
    pub fn next_aligned_example(&mut self, k: usize) -> Vec<SegmentBatch> {
        for s in 0..self.batch() {
            if let Some(doc) = self.cursor.streams[s].doc {
                // Skip what is left of the document: the next segment starts a new one.
                self.cursor.streams[s].offset = self.split.doc(doc).len as usize;
            }
        }
        let mut example = vec![self.next_segment()];
        self.hold = true;
        example.extend((1..k).map(|_| self.next_segment()));
        self.hold = false;
        example
    }
}
