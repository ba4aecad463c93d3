//! Activation checkpointing by segment (`train.checkpointing`): the same loss and gradients as
//! one graph per window, for every memory kind, with windows that span several segments and a
//! document reset inside the window.

use burn::tensor::{Device, Tensor};
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryKind, MemoryState, ModelConfig};
use infini_train::backprop::{StepGrads, Window, WriteRepeat, backprop_example};

fn example(config: &ModelConfig, batch: usize, segments: usize) -> Vec<SegmentBatch> {
    let n = config.segment_len;
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % config.vocab_size as u64) as u32
    };
    (0..segments)
        .map(|s| SegmentBatch {
            batch,
            segment_len: n,
            inputs: (0..batch * n).map(|_| next()).collect(),
            targets: (0..batch * n).map(|_| next()).collect(),
            mask: (0..batch * n).map(|i| if i % 7 == 3 { 0.0 } else { 1.0 }).collect(),
            // Stream 1 starts a new document in segment 2.
            reset: (0..batch).map(|b| s == 0 || (b == 1 && s == 2)).collect(),
            docs: vec![Some(0); batch],
        })
        .collect()
}

fn grads(model: &InfiniLm, config: &ModelConfig, ex: &[SegmentBatch], window: Window, device: &Device) -> (f64, Vec<Vec<f32>>) {
    let mut acc = StepGrads::new();
    let memory = MemoryState::empty(config, ex[0].batch, device);
    let (loss, _) = backprop_example(model, ex, memory, window, 0.01, device, &mut acc);
    let loss = loss.into_scalar::<f64>();
    let g = acc.grads(model);
    let mut out = Vec::new();
    let two = |t: Option<Tensor<2>>| t.expect("gradient").into_data().try_into_vec::<f32>().unwrap();
    out.push(two(g.get::<2>(model.embedding.weight.id)));
    for b in &model.blocks {
        out.push(two(g.get::<2>(b.attn.wk.weight.id)));
        out.push(two(g.get::<2>(b.ffn.w2.weight.id)));
        if let Some(beta) = &b.attn.beta {
            out.push(g.get::<1>(beta.id).expect("gate gradient").into_data().try_into_vec::<f32>().unwrap());
        }
    }
    (loss, out)
}

#[test]
fn checkpointing_by_segment_gives_the_same_gradients() {
    let device = Device::flex().autodiff();
    for memory in [MemoryKind::Linear, MemoryKind::Delta, MemoryKind::Xl, MemoryKind::None] {
        let mut config = ModelConfig::tiny(64);
        config.segment_len = 8;
        config.memory = memory;
        config.init_std = 0.2;
        let model = config.init(&device);
        let ex = example(&config, 2, 6);
        // With memory dilution too: the recomputed segments must count their writes as often.
        let dilution = Some(WriteRepeat { max: 8.0, seed: 5, first_stream: 0 });
        for (segments, repeat) in [(3, None), (6, None), (3, dilution)] {
            // Recomputing first, on a fresh model: nothing it does may change the weights.
            let (b, gb) = grads(&model, &config, &ex, Window { segments, recompute: true, repeat }, &device);
            let (a, ga) = grads(&model, &config, &ex, Window { segments, recompute: false, repeat }, &device);
            assert!((a - b).abs() <= 1e-6 * a.abs(), "{memory:?} window {segments}: loss {a} vs {b}");
            for (i, (x, y)) in ga.iter().zip(&gb).enumerate() {
                let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(scale > 0.0, "{memory:?}: gradient {i} is zero, the comparison would be vacuous");
                assert!(err <= 1e-4 * scale, "{memory:?} window {segments}: gradient {i} differs by {err} (scale {scale})");
            }
        }
    }
}
