//! Generation and the passkey task.

use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{MemoryState, ModelConfig};
use infini_train::generate::{Sampling, first_number, generate, key_digit_offsets, parse_lengths, passkey_prompt, passkey_sentence, score_answer};
use infini_train::generate::{PASSKEY_FILLER, PASSKEY_INSTRUCTION, PASSKEY_QUESTION};

/// Greedy continuation by recomputing every segment from scratch for each new token.
fn greedy_by_recomputation(model: &infini_model::InfiniLm, config: &ModelConfig, prompt: &[u32], steps: usize, device: &Device) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    for _ in 0..steps {
        let mut memory = MemoryState::empty(config, 1, device);
        let mut last = Vec::new();
        for chunk in tokens.chunks(config.segment_len) {
            let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
            let (logits, next) = model.forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, chunk.len()]), device), memory, &[]);
            memory = next;
            let [_, n, v] = logits.dims();
            last = logits.slice([0..1, n - 1..n, 0..v]).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        }
        let best = last.iter().enumerate().fold((0, f32::MIN), |b, (i, &l)| if l > b.1 { (i, l) } else { b }).0;
        tokens.push(best as u32);
    }
    tokens[prompt.len()..].to_vec()
}

#[test]
fn cached_generation_equals_recomputation() {
    let device = Device::flex();
    let mut config = ModelConfig::tiny(40);
    config.segment_len = 8;
    config.init_std = 0.5;
    let model = config.init(&device);
    let prompt: Vec<u32> = (0..19).map(|i| (i * 7 % 40) as u32).collect();
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    let mut streamed = Vec::new();
    let cached = generate(&model, &config, &prompt, 20, &greedy, None, &device, |t| streamed.push(t));
    assert_eq!(cached, streamed);
    assert_eq!(cached, greedy_by_recomputation(&model, &config, &prompt, 20, &device));
    assert!(cached.iter().collect::<std::collections::HashSet<_>>().len() > 1, "degenerate output makes the test vacuous");

    // A stop token (end of text) ends generation before it is emitted.
    let stop = cached[5];
    let first = cached.iter().position(|&t| t == stop).unwrap();
    let stopped = generate(&model, &config, &prompt, 20, &greedy, Some(stop), &device, |_| {});
    assert_eq!(stopped, cached[..first].to_vec());

    let sampled = |seed| generate(&model, &config, &prompt, 20, &Sampling { temperature: 1.0, top_k: 10, seed }, None, &device, |_| {});
    assert_eq!(sampled(3), sampled(3), "a seed fixes the sample");
    assert_ne!(sampled(3), sampled(4));
}

/// A stand-in tokenizer: one token per character.
fn chars(s: &str) -> Vec<u32> {
    s.chars().map(|c| c as u32).collect()
}

#[test]
fn passkey_prompts_place_the_key_at_the_requested_depth() {
    for length in [500, 2000, 8000] {
        for depth in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let (prompt, at) = passkey_prompt(&chars, 48213, length, depth);
            let text: String = prompt.iter().map(|&c| char::from_u32(c).unwrap()).collect();
            let sentence = passkey_sentence(48213);
            assert_eq!(text.matches(sentence.as_str()).count(), 1);
            assert_eq!(text.find(sentence.as_str()).unwrap(), at);
            assert!((prompt.len() as f64 - length as f64).abs() / (length as f64) < 0.1, "length {} for {length}", prompt.len());
            let head = PASSKEY_INSTRUCTION.len();
            let filler = prompt.len() - head - sentence.len() - PASSKEY_QUESTION.len();
            let relative = (at - head) as f64 / filler as f64;
            // The key sits between whole filler sentences: half a filler of granularity.
            let tolerance = 0.5 * PASSKEY_FILLER.len() as f64 / filler as f64 + 0.01;
            assert!((relative - depth).abs() <= tolerance, "key at {relative:.3} of the prompt, asked {depth} (length {length})");
            assert!(text.ends_with("What is the pass key? The pass key is"));
        }
    }
    assert_eq!(first_number(" 31337. Remember"), Some("31337".into()));
    assert_eq!(parse_lengths("2K,1M,500").unwrap(), vec![2048, 1 << 20, 500]);
    assert!(parse_lengths("2X").is_err());
}

#[test]
fn passkey_answers_are_scored_exact_by_prefix_and_by_position() {
    let t = true;
    let f = false;
    assert_eq!(score_answer("71432", "71432"), (t, t, vec![t, t, t, t, t]));
    // The key with more digits after it: not exact, but it began with the key.
    assert_eq!(score_answer("71432", "7143212"), (f, t, vec![t, t, t, t, t]));
    assert_eq!(score_answer("71432", "71482"), (f, f, vec![t, t, t, f, t]));
    // Too few digits: the missing positions are wrong.
    assert_eq!(score_answer("71432", "714"), (f, f, vec![t, t, t, f, f]));
    assert_eq!(score_answer("71432", ""), (f, f, vec![f; 5]));
}

#[test]
fn key_digit_offsets_are_the_digits_positions_in_their_segments() {
    let decode = |ids: &[u32]| ids.iter().map(|&c| char::from_u32(c).unwrap()).collect::<String>();
    let (prompt, at) = passkey_prompt(&chars, 48213, 2000, 0.5);
    // " The pass key is 48213.": the first digit is 17 characters into the sentence.
    let first = at + passkey_sentence(48213).find('4').unwrap();
    let want: Vec<usize> = (first..first + 5).map(|i| i % 32).collect();
    assert_eq!(key_digit_offsets(&prompt, at, &decode, 32), want);
    // A tokenizer that keeps the key whole: all five digits share their token's position.
    let mut merged = prompt[..first].to_vec();
    merged.push(0x10_0000);
    let whole = |ids: &[u32]| ids.iter().map(|&c| if c == 0x10_0000 { "48213".to_string() } else { decode(&[c]) }).collect::<String>();
    assert_eq!(key_digit_offsets(&merged, at, &whole, 32), vec![first % 32; 5]);
}
