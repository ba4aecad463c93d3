//! Evaluation: token-weighted perplexity against a hand computation, and batching invariance.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_data::{Split, SplitData};
use infini_model::{MemoryState, MemoryKind, ModelConfig};
use infini_train::eval::{EvalOptions, evaluate};

fn documents(lengths: &[usize], vocab: usize) -> Vec<(String, Vec<u32>)> {
    lengths
        .iter()
        .enumerate()
        .map(|(d, &len)| (format!("doc{d}"), (0..len).map(|i| ((i * 7 + d * 13 + i / 3) % vocab) as u32).collect()))
        .collect()
}

fn config(memory: MemoryKind) -> ModelConfig {
    let mut c = ModelConfig::tiny(50);
    c.segment_len = 8;
    c.init_std = 0.3;
    c.memory = memory;
    c
}

/// Total NLL and targets of one document, by running whole segments and a log-softmax in f64;
/// also the mean NLL of each segment, and the NLL and count by position within the segments after
/// the first, added to `by_position`.
fn by_hand(
    model: &infini_model::InfiniLm,
    config: &ModelConfig,
    doc: &[u32],
    device: &Device,
    by_position: &mut [(f64, u64)],
) -> (f64, usize, Vec<f64>) {
    let mut memory = MemoryState::empty(config, 1, device);
    let (mut total, mut count, mut segment_means) = (0.0, 0, Vec::new());
    let inputs = &doc[..doc.len() - 1];
    for (s, chunk) in inputs.chunks(config.segment_len).enumerate() {
        let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
        let (logits, next) = model.forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, chunk.len()]), device), memory, &[]);
        memory = next;
        let v = config.vocab_size;
        let values: Vec<f64> = logits.into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
        let mut seg = 0.0;
        for (t, row) in values.chunks(v).enumerate() {
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let log_z = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            let target = doc[s * config.segment_len + t + 1] as usize;
            seg += log_z - row[target];
            if s > 0 {
                by_position[t].0 += log_z - row[target];
                by_position[t].1 += 1;
            }
        }
        total += seg;
        count += chunk.len();
        segment_means.push(seg / chunk.len() as f64);
    }
    (total, count, segment_means)
}

#[test]
fn perplexity_is_token_weighted_and_matches_a_hand_computation() {
    let device = Device::flex();
    for memory in [MemoryKind::Linear, MemoryKind::Delta, MemoryKind::None, MemoryKind::Xl] {
        let config = config(memory);
        let model = config.init(&device);
        let docs = documents(&[30, 12, 2], config.vocab_size);
        let (mut nll, mut tokens, mut means) = (0.0, 0, Vec::new());
        let mut positions = vec![(0.0, 0u64); config.segment_len];
        for (_, doc) in &docs {
            let (n, c, m) = by_hand(&model, &config, doc, &device, &mut positions);
            (nll, tokens) = (nll + n, tokens + c);
            means.extend(m);
        }
        let split = Arc::new(SplitData::from_documents(Split::Test, docs));
        let options = EvalOptions { max_docs: 0, max_tokens_per_doc: 0, batch_size: 1, progress: false, answers_only: false };
        let result = evaluate(&model, &config, split, &options, &device).unwrap();
        assert_eq!(result.tokens, tokens as u64);
        let want = nll / tokens as f64;
        assert!((result.loss - want).abs() <= 1e-5 * want, "{memory:?}: loss {} vs hand {want}", result.loss);
        assert!((result.perplexity - want.exp()).abs() <= 1e-4 * want.exp());
        let mean_of_means = means.iter().sum::<f64>() / means.len() as f64;
        assert!((mean_of_means - want).abs() > 1e-4, "the fixture should tell the two averages apart");
        // By position within the segment, pooled over every segment but a document's first.
        assert_eq!(result.by_position.len(), config.segment_len);
        for (stat, &(want_nll, want_tokens)) in result.by_position.iter().zip(&positions) {
            assert_eq!(stat.tokens, want_tokens, "{memory:?}: tokens at position {}", stat.index);
            assert!((stat.nll - want_nll).abs() <= 1e-5 * want_nll, "{memory:?}: position {}: {} vs {want_nll}", stat.index, stat.nll);
        }
        let head = positions[..2].iter().fold((0.0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        let want_head = (head.0 / head.1 as f64).exp();
        assert!((result.position_perplexity(0..2) - want_head).abs() <= 1e-4 * want_head);
        // Words and bytes of from_documents are one per token: word perplexity counts whole documents.
        assert_eq!(result.words, 44.0);
    }
}

#[test]
fn batched_evaluation_equals_one_document_at_a_time() {
    let device = Device::flex();
    let config = config(MemoryKind::Linear);
    let model = config.init(&device);
    let split = Arc::new(SplitData::from_documents(Split::Test, documents(&[40, 9, 25, 17, 3, 33], config.vocab_size)));
    let run = |batch_size, max_docs, max_tokens_per_doc| {
        let options = EvalOptions { max_docs, max_tokens_per_doc, batch_size, progress: false, answers_only: false };
        evaluate(&model, &config, split.clone(), &options, &device).unwrap()
    };
    let one = run(1, 0, 0);
    let three = run(3, 0, 0);
    assert_eq!(one.tokens, three.tokens);
    assert!((one.nll - three.nll).abs() <= 1e-4 * one.nll, "{} vs {}", one.nll, three.nll);
    assert_eq!(one.by_segment.len(), 5);
    for (a, b) in one.by_segment.iter().zip(&three.by_segment) {
        assert_eq!(a.tokens, b.tokens);
        assert!((a.nll - b.nll).abs() <= 1e-4 * a.nll.max(1.0));
    }
    let limited = run(2, 2, 10);
    assert_eq!((limited.documents, limited.tokens), (2, 9 + 8), "10 tokens of doc 0 give 9 targets, doc 1 has 9 tokens");
}

#[test]
fn inspect_reads_whole_segments_into_the_memory_as_forward_does() {
    let device = Device::flex();
    let config = config(MemoryKind::Linear);
    let model = config.init(&device);
    let doc = &documents(&[8 * 3 + 5], config.vocab_size)[0].1;
    let report = infini_train::inspect::inspect(&model, &config, Some(doc), &device);
    assert_eq!(report.tokens_read, 24, "three whole segments, the partial one left out");
    // Reference: the same three segments through `forward`, and ‖M‖_F per head by hand.
    let mut memory = MemoryState::empty(&config, 1, &device);
    for chunk in doc[..24].chunks(8) {
        let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
        memory = model.forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 8]), &device), memory, &[]).1;
    }
    for (layer, m) in memory.layers.iter().filter_map(|l| l.compressive()).enumerate() {
        let values: Vec<f64> = m.m.clone().into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
        let per_head = values.len() / config.n_heads;
        for h in 0..config.n_heads {
            let want = values[h * per_head..(h + 1) * per_head].iter().map(|v| v * v).sum::<f64>().sqrt();
            let got = report.memory_norm[layer][h];
            assert!((got - want).abs() <= 1e-4 * want.max(1e-6), "layer {layer} head {h}: {got} vs {want}");
        }
    }
}

#[test]
fn retrieval_share_and_read_size_match_a_hand_computation() {
    let device = Device::flex();
    let config = config(MemoryKind::Delta);
    let model = config.init(&device);
    let prompt = &documents(&[8 * 3 + 5], config.vocab_size)[0].1;
    let (h, dk) = (config.n_heads, config.head_dim());
    let all = infini_train::inspect::retrieval_share(&model, &config, prompt, 0..24, &device);
    assert_eq!((all.memory_tokens, all.focus_tokens), (24, 24));
    for share in all.share.iter().flatten() {
        assert!((share - 1.0).abs() <= 1e-5, "the whole memory is the focus: share {share}");
    }
    let part = infini_train::inspect::retrieval_share(&model, &config, prompt, 8..16, &device);
    for share in part.share.iter().flatten() {
        assert!(*share > 0.0 && *share < 1.0, "one segment of three: share {share}");
    }
    // The read's change between prompts: none for the same prompt, some when a token in memory differs.
    let same = infini_train::inspect::read_change(&part, &all, h);
    assert!(same.iter().flatten().all(|&c| c == 0.0), "the same prompt reads the same: {same:?}");
    let mut edited = prompt.clone();
    edited[3] = (edited[3] + 1) % config.vocab_size as u32;
    let other = infini_train::inspect::retrieval_share(&model, &config, &edited, 8..16, &device);
    let change = infini_train::inspect::read_change(&part, &other, h);
    assert!(change[0].iter().all(|&c| c > 1e-6), "a token of the first segment changed layer 0's memory: {:?}", change[0]);
    // Reference: the memory after the three whole segments, and the last token's σ(q)M / σ(q)z in f64.
    let mut memory = MemoryState::empty(&config, 1, &device);
    for chunk in prompt[..24].chunks(8) {
        let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
        memory = model.forward(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 8]), &device), memory, &[]).1;
    }
    let ids: Vec<i64> = prompt[24..].iter().map(|&t| t as i64).collect();
    let (inputs, _) = model.attention_inputs(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 5]), &device), memory.clone());
    let f64s = |t: Tensor<2>| t.into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
    for (layer, x) in inputs.into_iter().enumerate() {
        let q = f64s(model.blocks[layer].attn.wq.forward(x).reshape([5, h * dk]).slice([4..5, 0..h * dk]));
        let mem = memory.layers[layer].compressive().unwrap();
        let m = f64s(mem.m.clone().reshape([h * dk, dk]));
        let z = f64s(mem.z.clone().reshape([1, h * dk]));
        for head in 0..h {
            let sq: Vec<f64> = (0..dk).map(|i| q[head * dk + i]).map(|x| if x > 0.0 { x + 1.0 } else { x.exp() }).collect();
            let denom: f64 = (0..dk).map(|i| sq[i] * z[head * dk + i]).sum();
            let norm = (0..dk)
                .map(|j| (0..dk).map(|i| sq[i] * m[(head * dk + i) * dk + j]).sum::<f64>() / denom)
                .map(|r| r * r)
                .sum::<f64>()
                .sqrt();
            let got = part.read_norm(h)[layer][head];
            assert!((got - norm).abs() <= 1e-4 * norm, "layer {layer} head {head}: {got} vs {norm}");
        }
    }
}
