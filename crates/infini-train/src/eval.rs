//! Perplexity over whole documents, streamed segment by segment with the memory.
//!
//! Everything is token-weighted: the loss is the total NLL over the total number of predicted
//! tokens (never a mean of per-segment means). Word-level perplexity divides the same total NLL
//! by the number of whitespace-separated words, as PG19 results are reported.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use infini_data::progress::Progress;
use infini_data::{SegmentStream, SplitData};
use infini_model::{InfiniLm, MemoryState, ModelConfig};
use serde::Serialize;

use burn::tensor::Tensor;
use infini_data::SegmentBatch;

use crate::loss::segment_nll;
use infini_model::host::head::HostHead;

/// The one loop that reads documents without training (evaluation, `infini inspect`, the
/// evaluation benchmark): each segment of `segments` (all of one batch size) goes through the
/// model with the memory carried from the one before (emptied for streams whose reset flag is
/// set), and `each` gets the segment with its per-position masked NLL `[B, N]`. Returns the
/// memory after the last segment. Generation and the passkey test read through
/// [`InfiniLm::forward_stream`] instead, which also keeps a key/value cache inside a segment.
pub fn read_segments(
    model: &InfiniLm,
    memory: MemoryState,
    segments: impl IntoIterator<Item = SegmentBatch>,
    device: &Device,
    mut each: impl FnMut(&SegmentBatch, Tensor<2>),
) -> MemoryState {
    let mut memory = memory;
    // The head's weight copied out once for the host products (Flex, f32, no autodiff).
    let head = if device.is_autodiff() { None } else { HostHead::of(model, device) };
    for segment in segments {
        let (nll, next) = segment_nll(model, &segment, memory, device, head.as_ref());
        memory = next;
        each(&segment, nll);
    }
    memory
}

/// Which documents to evaluate, and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Documents (in split order); 0 = all.
    pub max_docs: usize,
    /// Tokens read per document; 0 = all.
    pub max_tokens_per_doc: usize,
    /// Documents evaluated side by side.
    pub batch_size: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Count only the answer tokens of a synthetic task.
    pub answers_only: bool,
}

/// NLL and token count at one index: of a segment within its document (`by_segment`), or of a
/// token within its segment (`by_position`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SegmentStat {
    /// Segment index within the document (0 = first, empty memory), or the predicting token's
    /// position within its segment (0 = no local context: only the memory reaches further back).
    pub index: usize,
    /// Summed NLL (nats).
    pub nll: f64,
    /// Predicted tokens.
    pub tokens: u64,
    /// exp(nll / tokens).
    pub perplexity: f64,
}

/// Results of an evaluation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalResult {
    /// Documents evaluated.
    pub documents: usize,
    /// Predicted tokens.
    pub tokens: u64,
    /// Total NLL in nats.
    pub nll: f64,
    /// Words covered (whitespace-separated; pro rata for truncated documents).
    pub words: f64,
    /// UTF-8 bytes covered (pro rata for truncated documents).
    pub bytes: f64,
    /// Mean NLL per token (nats).
    pub loss: f64,
    /// Token-level perplexity exp(loss).
    pub perplexity: f64,
    /// Word-level perplexity exp(nll / words).
    pub word_perplexity: f64,
    /// Bits per UTF-8 byte.
    pub bits_per_byte: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Perplexity by segment index.
    pub by_segment: Vec<SegmentStat>,
    /// Perplexity by position within the segment, pooled over all segments but each document's
    /// first (whose memory is empty): at position 0 local attention sees one token, so what the
    /// memory carries over from earlier segments shows most at the start.
    pub by_position: Vec<SegmentStat>,
}

impl EvalResult {
    /// Perplexity pooled over the positions `range` within segments (of `by_position`: every
    /// segment but each document's first); NaN where no token falls in it.
    pub fn position_perplexity(&self, range: std::ops::Range<usize>) -> f64 {
        let in_range = self.by_position.iter().filter(|s| range.contains(&s.index));
        let (nll, tokens) = in_range.fold((0.0, 0u64), |(nll, tokens), s| (nll + s.nll, tokens + s.tokens));
        if tokens == 0 { f64::NAN } else { (nll / tokens as f64).exp() }
    }
}

/// The whole segments of one document as a stream of batch 1 (the first one resets the memory;
/// the last token, with nothing after it to predict, is masked out).
pub fn document_segments(tokens: &[u32], segment_len: usize) -> impl Iterator<Item = SegmentBatch> + '_ {
    let n = segment_len;
    (0..tokens.len() / n).map(move |i| {
        let inputs = tokens[i * n..(i + 1) * n].to_vec();
        let targets: Vec<u32> = (i * n + 1..(i + 1) * n + 1).map(|t| tokens.get(t).copied().unwrap_or(0)).collect();
        let mask = (i * n + 1..(i + 1) * n + 1).map(|t| if t < tokens.len() { 1.0 } else { 0.0 }).collect();
        SegmentBatch { batch: 1, segment_len: n, inputs, targets, mask, reset: vec![i == 0], docs: vec![Some(0)] }
    })
}

/// Evaluates `model` (built without autodiff) on the documents of `split`.
pub fn evaluate(model: &InfiniLm, config: &ModelConfig, split: Arc<SplitData>, options: &EvalOptions, device: &Device) -> infini_data::Result<EvalResult> {
    let n = config.segment_len;
    let count = if options.max_docs == 0 { split.len() } else { options.max_docs.min(split.len()) };
    let limit = (options.max_tokens_per_doc > 0).then_some(options.max_tokens_per_doc);
    let docs: Vec<usize> = (0..count).collect();
    let expected: u64 = docs.iter().map(|&d| (split.doc(d).len as usize).min(limit.unwrap_or(usize::MAX)).saturating_sub(1) as u64).sum();
    let mut stream = SegmentStream::documents(split.clone(), options.batch_size, n, docs, limit)?.answers_only(options.answers_only)?;
    let batch = stream.batch();
    let memory = MemoryState::empty(config, batch, device);
    let mut result = EvalResult {
        by_position: (0..n).map(|index| SegmentStat { index, ..Default::default() }).collect(),
        ..Default::default()
    };
    let mut seg_index = vec![0usize; batch];
    let mut covered = vec![0u64; split.len()];
    let mut progress = options.progress.then(|| Progress::new("evaluating", "tokens", Some(expected)));
    let start = Instant::now();
    let segments = std::iter::from_fn(|| (!stream.is_exhausted()).then(|| stream.next_segment()));
    read_segments(model, memory, segments, device, |segment, nll| {
        let per_token: Vec<f64> = nll.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 data");
        for s in 0..batch {
            if segment.reset[s] {
                seg_index[s] = 0;
            }
            let Some(doc) = segment.docs[s] else { continue };
            let mask = &segment.mask[s * n..(s + 1) * n];
            let tokens = mask.iter().filter(|&&m| m > 0.0).count() as u64;
            seg_index[s] += 1;
            if tokens == 0 {
                continue;
            }
            let index = seg_index[s] - 1;
            let row = &per_token[s * n..(s + 1) * n];
            let nll_sum: f64 = row.iter().sum();
            covered[doc] += tokens;
            result.nll += nll_sum;
            result.tokens += tokens;
            while result.by_segment.len() <= index {
                result.by_segment.push(SegmentStat { index: result.by_segment.len(), ..Default::default() });
            }
            let stat = &mut result.by_segment[index];
            stat.nll += nll_sum;
            stat.tokens += tokens;
            if index > 0 {
                for ((stat, &m), &value) in result.by_position.iter_mut().zip(mask).zip(row) {
                    if m > 0.0 {
                        stat.nll += value;
                        stat.tokens += 1;
                    }
                }
            }
        }
        if let Some(p) = progress.as_mut() {
            p.set_position(result.tokens);
        }
    });
    if let Some(p) = progress {
        p.finish();
    }
    for (doc, &tokens) in covered.iter().enumerate() {
        if tokens == 0 {
            continue;
        }
        let entry = split.doc(doc);
        // Targets cover tokens 1..=tokens of the document: that share of its words and bytes.
        let share = ((tokens + 1) as f64 / entry.len as f64).min(1.0);
        result.documents += 1;
        result.words += entry.words as f64 * share;
        result.bytes += entry.bytes as f64 * share;
    }
    result.seconds = start.elapsed().as_secs_f64();
    result.loss = result.nll / result.tokens.max(1) as f64;
    result.perplexity = result.loss.exp();
    result.word_perplexity = (result.nll / result.words.max(1.0)).exp();
    result.bits_per_byte = result.nll / std::f64::consts::LN_2 / result.bytes.max(1.0);
    result.tokens_per_s = result.tokens as f64 / result.seconds.max(1e-9);
    result.by_position.retain(|stat| stat.tokens > 0);
    for stat in result.by_segment.iter_mut().chain(&mut result.by_position) {
        stat.perplexity = (stat.nll / stat.tokens.max(1) as f64).exp();
    }
    Ok(result)
}
