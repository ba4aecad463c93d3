//! Text generation and the passkey-retrieval task, both on [`InfiniLm::forward_stream`]: the
//! prompt is read segment by segment into the memory (constant memory in its length), then
//! tokens are decoded one at a time with a key/value cache inside the current segment.

use burn::tensor::{Device, Int, Tensor};
use infini_model::{InfiniLm, ModelConfig, StreamState};
use serde::Serialize;

/// How to pick each next token.
#[derive(Clone, Debug)]
pub struct Sampling {
    /// 0 = greedy (argmax); otherwise softmax temperature.
    pub temperature: f64,
    /// Sample among the k most likely tokens only (0 = all).
    pub top_k: usize,
    /// Seed of the sampler.
    pub seed: u64,
}

/// A tiny fixed generator (SplitMix64), so that a seed gives the same text everywhere.
use infini_data::synthetic::Rng;

fn pick(logits: &[f32], sampling: &Sampling, rng: &mut Rng) -> u32 {
    let argmax = || logits.iter().enumerate().fold((0, f32::MIN), |b, (i, &l)| if l > b.1 { (i, l) } else { b }).0 as u32;
    if sampling.temperature <= 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if sampling.top_k > 0 {
        order.truncate(sampling.top_k);
    }
    let max = logits[order[0]] as f64;
    let weights: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - max) / sampling.temperature).exp()).collect();
    let mut r = rng.uniform() * weights.iter().sum::<f64>();
    for (w, &i) in weights.iter().zip(&order) {
        r -= w;
        if r <= 0.0 {
            return i as u32;
        }
    }
    order[order.len() - 1] as u32
}

/// One stream of token ids `[1, len]`.
fn ids(values: &[u32], device: &Device) -> Tensor<2, Int> {
    crate::loss::ids(values, 1, values.len(), device)
}

/// Reads `prompt` (at most a segment at a time, so memory stays constant in its length) and
/// returns the stream state and the logits after its last token.
pub fn read_prompt(model: &InfiniLm, config: &ModelConfig, prompt: &[u32], device: &Device) -> (StreamState, Vec<f32>) {
    assert!(!prompt.is_empty(), "the prompt has no tokens");
    let mut state = StreamState::new(config, 1, device);
    let mut last = Vec::new();
    let n = config.segment_len;
    let mut start = 0;
    while start < prompt.len() {
        // Align chunks to segment boundaries so every chunk but the last completes a segment.
        let take = (n - state.position).min(prompt.len() - start);
        let (logits, next) = model.forward_stream(ids(&prompt[start..start + take], device), state);
        state = next;
        start += take;
        if start == prompt.len() {
            let v = logits.dims()[2];
            last = logits.slice([0..1, take - 1..take, 0..v]).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        }
    }
    (state, last)
}

/// Generates up to `max_new` tokens after `prompt`, calling `on_token` with each; stops early
/// at `stop` (e.g. end of text). Returns the new tokens.
pub fn generate(
    model: &InfiniLm,
    config: &ModelConfig,
    prompt: &[u32],
    max_new: usize,
    sampling: &Sampling,
    stop: Option<u32>,
    device: &Device,
    mut on_token: impl FnMut(u32),
) -> Vec<u32> {
    let (mut state, mut logits) = read_prompt(model, config, prompt, device);
    let mut rng = Rng(sampling.seed);
    let mut out = Vec::new();
    for _ in 0..max_new {
        let token = pick(&logits, sampling, &mut rng);
        if Some(token) == stop {
            break;
        }
        out.push(token);
        on_token(token);
        let (l, next) = model.forward_stream(ids(&[token], device), state);
        state = next;
        logits = l.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    }
    out
}

pub use infini_data::synthetic::{PASSKEY_FILLER, PASSKEY_INSTRUCTION, PASSKEY_QUESTION, passkey_sentence};

/// A passkey prompt of about `length` tokens with the key sentence at `depth` (0 = start,
/// 1 = end) of the filler, each piece tokenized on its own as in prepared synthetic data
/// ([`infini_data::synthetic`]). Returns the prompt and the token index where the key sentence starts.
pub fn passkey_prompt(encode: &dyn Fn(&str) -> Vec<u32>, key: u32, length: usize, depth: f64) -> (Vec<u32>, usize) {
    let count = |s: &str| encode(s).len();
    let filler = encode(PASSKEY_FILLER);
    let sentence = passkey_sentence(key);
    let mut prompt = Vec::with_capacity(length + 16);
    let mut at = 0;
    for piece in infini_data::synthetic::passkey_prompt_pieces(key, length, depth, filler.len(), &count) {
        if piece == sentence {
            at = prompt.len();
        }
        if piece == PASSKEY_FILLER { prompt.extend_from_slice(&filler) } else { prompt.extend(encode(&piece)) }
    }
    (prompt, at)
}

/// Accuracy of one (length, depth) cell of the passkey table.
#[derive(Clone, Debug, Serialize)]
pub struct PasskeyCell {
    /// Target prompt length in tokens.
    pub length: usize,
    /// Depth of the key in the filler.
    pub depth: f64,
    /// Trials.
    pub trials: usize,
    /// Trials whose greedy answer's first number is the key.
    pub correct: usize,
    /// correct / trials.
    pub accuracy: f64,
    /// Trials whose answer's first number begins with the key (the key, perhaps with more
    /// digits after it: a model that never learned where the key ends), / trials.
    pub prefix_accuracy: f64,
    /// Mean fraction of the key's digits answered right at their position (partial recall;
    /// chance is 0.1).
    pub digit_accuracy: f64,
    /// The same per position in the key (first digit first): a first digit found and later
    /// ones not means the memory is read but not in order.
    pub digit_accuracy_by_position: Vec<f64>,
    /// Where the key's digits (its first mention) sit in their segment, per digit: the
    /// position within the segment, 0 = a segment's first token, whose local attention sees no
    /// token before it. From the cell's last prompt (the same for every trial when all keys
    /// tokenize to the same length, as with `--split-digits`).
    pub key_digit_offsets: Vec<usize>,
}

/// The in-segment position of each digit of the key's first mention, for a prompt whose key
/// sentence starts at token `at` (`decode` one token at a time finds the digits).
pub fn key_digit_offsets(prompt: &[u32], at: usize, decode: &dyn Fn(&[u32]) -> String, segment_len: usize) -> Vec<usize> {
    let mut offsets = Vec::new();
    for (i, &token) in prompt.iter().enumerate().skip(at) {
        let digits = decode(&[token]).chars().filter(char::is_ascii_digit).count();
        offsets.extend(std::iter::repeat_n(i % segment_len, digits));
        if offsets.len() >= KEY_DIGITS as usize {
            break;
        }
    }
    offsets.truncate(KEY_DIGITS as usize);
    offsets
}

/// Digits of every passkey.
const KEY_DIGITS: u32 = 5;

/// The first run of digits in `text`.
pub fn first_number(text: &str) -> Option<String> {
    let digits: String = text.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// How an answer's first number `said` compares with `key`: the same number, a number that
/// begins with the key (the key with more digits after it), and each of the key's digits right
/// at its position.
pub fn score_answer(key: &str, said: &str) -> (bool, bool, Vec<bool>) {
    let by_position = key.chars().enumerate().map(|(i, k)| said.chars().nth(i) == Some(k)).collect();
    (said == key, said.starts_with(key), by_position)
}

/// Runs `trials` passkey prompts of `length` tokens with the key at `depth` and counts exact answers.
#[allow(clippy::too_many_arguments)]
pub fn passkey_cell(
    model: &InfiniLm,
    config: &ModelConfig,
    encode: &dyn Fn(&str) -> Vec<u32>,
    decode: &dyn Fn(&[u32]) -> String,
    length: usize,
    depth: f64,
    trials: usize,
    seed: u64,
    device: &Device,
) -> PasskeyCell {
    let mut rng = Rng(seed ^ (length as u64).wrapping_mul(31) ^ depth.to_bits());
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    let (mut correct, mut prefix) = (0, 0);
    let mut by_position = vec![0.0; KEY_DIGITS as usize];
    let mut offsets = Vec::new();
    for _ in 0..trials {
        // Held-out keys only: synthetic training data never uses them.
        let key = rng.key(KEY_DIGITS, true);
        let (prompt, at) = passkey_prompt(encode, key, length, depth);
        offsets = key_digit_offsets(&prompt, at, decode, config.segment_len);
        let answer = generate(model, config, &prompt, 8, &greedy, None, device, |_| {});
        let said = first_number(&decode(&answer)).unwrap_or_default();
        let (exact, begins, digits) = score_answer(&key.to_string(), &said);
        correct += usize::from(exact);
        prefix += usize::from(begins);
        for (count, right) in by_position.iter_mut().zip(digits) {
            *count += f64::from(u8::from(right));
        }
    }
    let n = trials.max(1) as f64;
    let digit_accuracy_by_position: Vec<f64> = by_position.iter().map(|c| c / n).collect();
    let digit_accuracy = digit_accuracy_by_position.iter().sum::<f64>() / f64::from(KEY_DIGITS);
    PasskeyCell { length, depth, trials, correct, accuracy: correct as f64 / n, prefix_accuracy: prefix as f64 / n, digit_accuracy, digit_accuracy_by_position, key_digit_offsets: offsets }
}

/// Parses `2K,8K,1M,500` (K = 1024, M = 1024²) into token counts.
pub fn parse_lengths(spec: &str) -> Result<Vec<usize>, String> {
    spec.split(',')
        .map(|s| {
            let s = s.trim();
            let (num, mult) = match s.chars().last() {
                Some('K' | 'k') => (&s[..s.len() - 1], 1024),
                Some('M' | 'm') => (&s[..s.len() - 1], 1024 * 1024),
                _ => (s, 1),
            };
            num.parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .map(|v| (v * mult as f64) as usize)
                .ok_or_else(|| format!("bad length `{s}`: use numbers like 2K, 32K, 1M or 5000"))
        })
        .collect()
}
