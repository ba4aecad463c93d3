//! Synthetic long-range tasks as a corpus kind: documents whose answer can only be found far
//! back in the text, deterministic by seed, with the answer tokens marked so that training can
//! put its loss on them alone (`data.loss_on = "answers"`).
//!
//! - `passkey`: the paper's passkey prompt (Mohtashami & Jaggi 2023): an instruction, filler
//!   repeated, the key sentence at a random depth of the filler, more filler, the question, and
//!   the answer (the key's digits).
//! - `recall`: associative recall across segments: `pairs` named codes written at the start,
//!   filler, then every code asked for in random order; with the filler longer than a segment,
//!   local attention alone is at chance on the answers.
//!
//! The filler is the fixed filler sentences, or with `filler = "<corpus folder>"` consecutive
//! text of that corpus's same split (a needle in a real haystack: the codes or the key written
//! into books, held-out filler for held-out documents).
//!
//! A document is a list of pieces, each tokenized on its own (as `infini passkey` tokenizes its
//! prompts), so the answer pieces map to exact token ranges. Keys and codes are split in two
//! disjoint sets by a fixed hash: the train split only uses training keys, validation, test and
//! `infini passkey` only held-out ones, so evaluation never asks for a key seen in training.

use serde::{Deserialize, Serialize};

use crate::corpus::{Document, Span, Split, stable_hash};
use crate::error::{Result, fail};
use crate::stream::splitmix;

/// The passkey instruction (the paper's wording).
pub const PASSKEY_INSTRUCTION: &str = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.";
/// Filler repeated to reach the target length.
pub const PASSKEY_FILLER: &str = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
/// The question closing the prompt; the answer is the key's digits.
pub const PASSKEY_QUESTION: &str = " What is the pass key? The pass key is";

/// The sentence hiding `key`.
pub fn passkey_sentence(key: u32) -> String {
    format!(" The pass key is {key}. Remember it. {key} is the pass key.")
}

/// The answer piece after [`PASSKEY_QUESTION`].
pub fn passkey_answer(key: u32) -> String {
    format!(" {key}")
}

/// Whether a key (or code) belongs to the held-out set (one in eight, by a fixed hash).
pub fn is_heldout_key(key: u32) -> bool {
    stable_hash(&key.to_le_bytes()) % 8 == 0
}

/// A tiny fixed generator (SplitMix64), so that a seed gives the same documents everywhere.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (splitmix(&mut self.0) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.uniform() * (hi - lo + 1) as f64) as usize
    }

    /// A number of `digits` digits (no leading zero), held out or not as asked.
    pub fn key(&mut self, digits: u32, heldout: bool) -> u32 {
        let lo = 10u32.pow(digits - 1);
        loop {
            let key = lo + (self.uniform() * (9 * lo) as f64) as u32;
            if is_heldout_key(key) == heldout {
                return key;
            }
        }
    }
}

/// Which synthetic task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// The passkey prompt with its answer.
    Passkey,
    /// Named codes written early, asked for late.
    Recall,
}

/// The `[synthetic]` table of a dataset card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// `passkey` or `recall`.
    pub task: Task,
    /// Seed of every choice (keys, depths, lengths, words); each split draws its own stream.
    #[serde(default)]
    pub seed: u64,
    /// Documents in the train split.
    #[serde(default = "d_train")]
    pub train_docs: usize,
    /// Documents in the validation and test splits (each).
    #[serde(default = "d_held")]
    pub heldout_docs: usize,
    /// Shortest document, in tokens of the tokenizer that prepares it.
    pub min_tokens: usize,
    /// Longest document, in tokens (lengths are drawn uniformly in between).
    pub max_tokens: usize,
    /// Digits of a key (passkey) or code (recall).
    #[serde(default = "d_digits")]
    pub digits: u32,
    /// Recall: pairs written at the start and asked for at the end.
    #[serde(default = "d_pairs")]
    pub pairs: usize,
    /// Passkey: share of documents whose key sentence sits at an end of the filler (depth 0,
    /// right after the instruction, or depth 1, right before the question; half each). The
    /// others draw the depth uniformly, which puts a key at an end in about one document of
    /// 2 × the filler repeats. Default 0.
    #[serde(default)]
    pub end_depth_share: f64,
    /// Filler from a corpus instead of the fixed filler sentences: its folder (pg19, proof-pile
    /// or text layout, detected), relative to the dataset card unless absolute. Each document's
    /// filler is consecutive text of the same split from a random place in it.
    #[serde(default)]
    pub filler: Option<String>,
}

fn d_train() -> usize {
    2000
}
fn d_held() -> usize {
    64
}
fn d_digits() -> u32 {
    5
}
fn d_pairs() -> usize {
    4
}

impl SyntheticSpec {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if self.min_tokens == 0 || self.max_tokens < self.min_tokens {
            return fail(format!(
                "synthetic.min_tokens ({}) must be at least 1 and at most synthetic.max_tokens ({})",
                self.min_tokens, self.max_tokens
            ));
        }
        if !(2..=9).contains(&self.digits) {
            return fail(format!("synthetic.digits must be between 2 and 9, got {}", self.digits));
        }
        if self.train_docs == 0 {
            return fail("synthetic.train_docs must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.end_depth_share) {
            return fail(format!("synthetic.end_depth_share must be between 0 and 1, got {}", self.end_depth_share));
        }
        if self.task != Task::Passkey && self.end_depth_share != 0.0 {
            return fail("synthetic.end_depth_share applies to task = \"passkey\" only");
        }
        if self.filler.as_ref().is_some_and(|f| f.trim().is_empty()) {
            return fail("synthetic.filler must name a corpus folder (or be left out for the fixed filler sentences)");
        }
        if self.task == Task::Recall && !(1..=RECALL_NAMES.len()).contains(&self.pairs) {
            return fail(format!("synthetic.pairs must be between 1 and {}, got {}", RECALL_NAMES.len(), self.pairs));
        }
        Ok(())
    }

    /// A one-line description, for the prepared data's manifest.
    pub fn describe(&self) -> String {
        // It fingerprints prepared data: a share of 0 is left out, so that data prepared before
        // the option existed is still up to date.
        let text = format!("{self:?}").replace(", filler: None", "");
        if self.end_depth_share == 0.0 { text.replace(", end_depth_share: 0.0", "") } else { text }
    }

    /// The documents of `split` with the fixed filler sentences; `count` gives a piece's length
    /// in tokens (the preparing tokenizer's, or an estimate when there is none yet, e.g. to train
    /// one). [`crate::Corpus::documents_sized`] reads `filler` and calls [`Self::documents_with`].
    pub fn documents(&self, split: Split, count: &dyn Fn(&str) -> usize) -> Vec<Document> {
        self.documents_with(split, count, None)
    }

    /// The documents of `split`, their filler taken from `filler_text` (the whole text of the
    /// filler corpus's split) when given, else the fixed filler sentences.
    pub fn documents_with(&self, split: Split, count: &dyn Fn(&str) -> usize, filler_text: Option<&str>) -> Vec<Document> {
        let (docs, stream) = match split {
            Split::Train => (self.train_docs, 1u64),
            Split::Validation => (self.heldout_docs, 2),
            Split::Test => (self.heldout_docs, 3),
        };
        let mut rng = Rng(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let heldout = split != Split::Train;
        let filler = match filler_text {
            Some(text) if !text.trim().is_empty() => Filler::Text(text),
            _ => Filler::Fixed(count(PASSKEY_FILLER).max(1)),
        };
        // Where the filler text starts: a stream of its own, so that a filler corpus changes the
        // haystack and not the keys, codes, depths or lengths.
        let mut place = Rng(rng.0 ^ 0x5851_f42d_4c95_7f2d);
        (0..docs)
            .map(|i| {
                let length = rng.range(self.min_tokens, self.max_tokens);
                let pieces = match self.task {
                    Task::Passkey => {
                        let key = rng.key(self.digits, heldout);
                        let depth = spread_depth(rng.uniform(), self.end_depth_share);
                        passkey_pieces(&mut place, key, length, depth, &filler, count)
                    }
                    Task::Recall => recall_pieces(&mut rng, &mut place, self.pairs, self.digits, heldout, length, &filler, count),
                };
                document(format!("{:?}-{}-{i:06}", self.task, split).to_lowercase(), pieces)
            })
            .collect()
    }
}

/// The key's depth from a uniform draw `u` in [0, 1): `share` of the draws go to the ends (0 or
/// 1, half each), the rest spread uniformly in between. One draw, so that a share of 0 gives the
/// documents of before, and another share changes the depths but not the keys or lengths.
fn spread_depth(u: f64, share: f64) -> f64 {
    let half = share / 2.0;
    if u < half {
        0.0
    } else if u >= 1.0 - half {
        1.0
    } else {
        (u - half) / (1.0 - share)
    }
}

/// Joins pieces into a [`Document`] whose spans mark each piece (and which are answers).
pub fn document(id: String, pieces: Vec<(String, bool)>) -> Document {
    let mut text = String::new();
    let mut spans = Vec::with_capacity(pieces.len());
    for (piece, answer) in pieces {
        text += &piece;
        spans.push(Span { end: text.len(), answer });
    }
    Document { title: id.clone(), id, text, spans }
}

/// Filler repeats (total, before the key) for a prompt of about `length` tokens with the key at
/// `depth`, given the token counts of the fixed parts and of one filler.
pub fn filler_repeats(length: usize, fixed: usize, filler: usize, depth: f64) -> (usize, usize) {
    let repeats = length.saturating_sub(fixed).div_ceil(filler.max(1)).max(1);
    let before = ((depth.clamp(0.0, 1.0) * repeats as f64).round() as usize).min(repeats);
    (repeats, before)
}

/// The pieces of a passkey prompt of about `length` tokens (answer excluded) with the key
/// sentence at `depth` (0 = start of the filler, 1 = its end): instruction, filler × before,
/// sentence, filler × after, question. `filler` is the token count of [`PASSKEY_FILLER`].
pub fn passkey_prompt_pieces(key: u32, length: usize, depth: f64, filler: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    let sentence = passkey_sentence(key);
    let fixed = count(PASSKEY_INSTRUCTION) + count(&sentence) + count(PASSKEY_QUESTION);
    let (repeats, before) = filler_repeats(length, fixed, filler, depth);
    let mut pieces = vec![PASSKEY_INSTRUCTION.to_string()];
    pieces.extend(std::iter::repeat_n(PASSKEY_FILLER.to_string(), before));
    pieces.push(sentence);
    pieces.extend(std::iter::repeat_n(PASSKEY_FILLER.to_string(), repeats - before));
    pieces.push(PASSKEY_QUESTION.to_string());
    pieces
}

/// Where a document's filler comes from.
enum Filler<'a> {
    /// [`PASSKEY_FILLER`] repeated; its length in tokens.
    Fixed(usize),
    /// Consecutive text of a corpus split, from a random place.
    Text(&'a str),
}

/// About `tokens` tokens (at least that many, by `count`) of consecutive text from a random
/// word boundary of `text`, wrapping around at its end, as one piece starting with a space.
fn text_filler(rng: &mut Rng, text: &str, tokens: usize, count: &dyn Fn(&str) -> usize) -> String {
    let tokens = tokens.max(1);
    let mut start = ((rng.uniform() * text.len() as f64) as usize).min(text.len() - 1);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    // Start after the next whitespace (a whole word), wrapping to the text's start.
    start = text[start..].find(char::is_whitespace).map_or(0, |i| start + i);
    let take = |bytes: usize| -> String {
        let mut piece = String::with_capacity(bytes + 16);
        let mut at = start;
        while piece.len() < bytes {
            let mut end = (at + bytes - piece.len()).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            piece += &text[at..end];
            at = if end == text.len() { 0 } else { end };
        }
        // End before the last whitespace: no word cut in two.
        let body = piece.trim();
        let body = body.rfind(char::is_whitespace).map_or(body, |i| body[..i].trim_end());
        format!(" {body}")
    };
    let mut bytes = tokens * 4;
    let mut piece = take(bytes);
    for _ in 0..6 {
        let got = count(&piece).max(1);
        if got >= tokens && got <= tokens + tokens / 20 + 2 {
            break;
        }
        bytes = ((bytes as f64 * tokens as f64 / got as f64).ceil() as usize).max(bytes / 4) + 8;
        piece = take(bytes);
    }
    piece
}

/// Splits a filler piece at the whitespace nearest `depth` of its length (0 = all after).
fn split_at_depth(piece: &str, depth: f64) -> (String, String) {
    let body = piece.trim_start();
    let mut at = (depth.clamp(0.0, 1.0) * body.len() as f64) as usize;
    while !body.is_char_boundary(at) {
        at -= 1;
    }
    let at = if at == 0 || at == body.len() { at } else { body[at..].find(char::is_whitespace).map_or(body.len(), |i| at + i) };
    let wrap = |s: &str| if s.trim().is_empty() { String::new() } else { format!(" {}", s.trim()) };
    (wrap(&body[..at]), wrap(&body[at..]))
}

fn passkey_pieces(
    place: &mut Rng,
    key: u32,
    length: usize,
    depth: f64,
    filler: &Filler,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(String, bool)> {
    let answer = passkey_answer(key);
    let prompt = length.saturating_sub(count(&answer) + 1);
    let sentence = passkey_sentence(key);
    let prompt_pieces = match filler {
        Filler::Fixed(tokens) => passkey_prompt_pieces(key, prompt, depth, *tokens, count),
        Filler::Text(text) => {
            let fixed = count(PASSKEY_INSTRUCTION) + count(&sentence) + count(PASSKEY_QUESTION);
            let (before, after) = split_at_depth(&text_filler(place, text, prompt.saturating_sub(fixed), count), depth);
            let mut pieces = vec![PASSKEY_INSTRUCTION.to_string()];
            pieces.extend([before, sentence.clone(), after].into_iter().filter(|p| !p.is_empty()));
            pieces.push(PASSKEY_QUESTION.to_string());
            pieces
        }
    };
    let mut pieces = Vec::new();
    for piece in prompt_pieces {
        if piece == sentence {
            // The key's second mention is an answer too: it can be copied from the first, a
            // few tokens back, which teaches the copy that the question's answer needs.
            let first = format!(" The pass key is {key}. Remember it.");
            pieces.push((first, false));
            pieces.push((answer.clone(), true));
            pieces.push((" is the pass key.".to_string(), false));
        } else {
            pieces.push((piece, false));
        }
    }
    pieces.push((answer, true));
    // The full stop is part of the answer: it teaches the model where the key ends, so that a
    // greedy answer is the key and not the key with more digits after it.
    pieces.push((".".to_string(), true));
    pieces
}

/// Names of the codes of the recall task (one common word each).
pub const RECALL_NAMES: [&str; 24] = [
    "red", "blue", "green", "gold", "black", "white", "silver", "brown", "apple", "river", "stone", "cloud", "horse", "tiger",
    "table", "bread", "ship", "tree", "door", "lamp", "fish", "bird", "ring", "moon",
];

#[allow(clippy::too_many_arguments)]
fn recall_pieces(
    rng: &mut Rng,
    place: &mut Rng,
    pairs: usize,
    digits: u32,
    heldout: bool,
    length: usize,
    filler: &Filler,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(String, bool)> {
    // Distinct names, each with its code.
    let mut names: Vec<usize> = (0..RECALL_NAMES.len()).collect();
    for i in 0..pairs {
        let j = i + (rng.uniform() * (names.len() - i) as f64) as usize;
        names.swap(i, j);
    }
    let chosen: Vec<(&str, u32)> = names[..pairs].iter().map(|&n| (RECALL_NAMES[n], rng.key(digits, heldout))).collect();
    let mut head = vec![(" Remember the codes.".to_string(), false)];
    for (name, code) in &chosen {
        // As in the passkey sentence, the second mention is an answer copied from the first.
        head.push((format!(" The {name} code is {code}. Remember it."), false));
        head.push((format!(" {code}"), true));
        head.push((format!(" is the {name} code."), false));
    }
    let mut order: Vec<usize> = (0..pairs).collect();
    for i in (1..pairs).rev() {
        let j = (rng.uniform() * (i + 1) as f64) as usize;
        order.swap(i, j);
    }
    let mut tail = Vec::new();
    for &i in &order {
        let (name, code) = chosen[i];
        tail.push((format!(" What is the {name} code? The {name} code is"), false));
        tail.push((format!(" {code}"), true));
        tail.push((".".to_string(), false));
    }
    let fixed: usize = head.iter().chain(&tail).map(|(p, _)| count(p)).sum();
    match filler {
        Filler::Fixed(tokens) => {
            let repeats = length.saturating_sub(fixed).div_ceil(*tokens).max(1);
            head.extend(std::iter::repeat_n((PASSKEY_FILLER.to_string(), false), repeats));
        }
        Filler::Text(text) => head.push((text_filler(place, text, length.saturating_sub(fixed), count), false)),
    }
    head.extend(tail);
    head
}

/// Token-count estimate for text without a tokenizer (about four bytes a token).
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}
