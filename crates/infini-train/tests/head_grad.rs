//! The training step computes the output head's loss and gradient by hand (fused on the host
//! for Flex, tensor ops elsewhere): its gradients must equal plain autodiff through
//! `log_softmax` for every parameter, tied or untied head, with masked positions, across a
//! TBPTT window that spans two segments.

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryState, MemoryKind, ModelConfig};
use infini_train::loss::segment_nll;
use infini_train::optim::gradient_values;
use infini_train::backprop::{StepGrads, Window, backprop_example};

fn example(batch: usize, n: usize, segments: usize, vocab: u32) -> Vec<SegmentBatch> {
    let mut state = 12345u64;
    let mut next = move || {
        (infini_data::stream::splitmix(&mut state) % vocab as u64) as u32
    };
    (0..segments)
        .map(|s| {
            let inputs: Vec<u32> = (0..batch * n).map(|_| next()).collect();
            let targets: Vec<u32> = (0..batch * n).map(|_| next()).collect();
            // Some positions without loss, as at a document's end.
            let mask = (0..batch * n).map(|i| if (i + s) % 5 == 3 { 0.0 } else { 1.0 }).collect();
            SegmentBatch { batch, segment_len: n, inputs, targets, mask, reset: vec![s == 0; batch], docs: vec![Some(0); batch] }
        })
        .collect()
}

/// Reference: autodiff through log_softmax over the logits, window by window.
fn reference(model: &InfiniLm, example: &[SegmentBatch], config: &ModelConfig, window: usize, scale: f64, device: &Device) -> (f64, GradientsParams) {
    let mut acc = GradientsAccumulator::<InfiniLm>::new();
    let mut memory = MemoryState::empty(config, example[0].batch, device);
    let mut total = 0.0;
    for chunk in example.chunks(window) {
        let mut losses: Vec<Tensor<1>> = Vec::new();
        for segment in chunk {
            let (nll, next) = segment_nll(model, segment, memory, device, None);
            memory = next;
            losses.push(nll.sum());
        }
        let loss = Tensor::cat(losses, 0).sum().mul_scalar(scale);
        total += loss.clone().into_scalar::<f64>();
        acc.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
        memory = memory.detach();
    }
    (total, acc.grads())
}

fn check(tie_embeddings: bool, memory: MemoryKind) {
    let device = Device::flex().autodiff();
    let mut config = ModelConfig::tiny(97);
    config.segment_len = 8;
    config.tie_embeddings = tie_embeddings;
    config.memory = memory;
    let model: InfiniLm = config.init(&device);
    let example = example(2, 8, 4, 97);
    let scale = 1.0 / 50.0;
    let (expected_loss, expected) = reference(&model, &example, &config, 2, scale, &device);
    for recompute in [false, true] {
        let mut acc = StepGrads::new();
        let memory0 = MemoryState::empty(&config, 2, &device);
        let (loss, _) = backprop_example(&model, &example, memory0, Window { segments: 2, recompute, repeat: None }, scale, &device, &mut acc);
        let loss = loss.into_scalar::<f64>();
        assert!((loss - expected_loss).abs() < 1e-5 * expected_loss.abs(), "loss {loss} vs {expected_loss}");
        let (ours, theirs) = (gradient_values(&model, &acc.grads(&model)), gradient_values(&model, &expected));
        assert_eq!(ours.len(), theirs.len());
        let mut compared = 0;
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                assert_eq!(a.is_some(), b.is_some(), "parameter {i}: gradient present in only one");
                continue;
            };
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 1e-4 * scale, "parameter {i} (tied {tie_embeddings}, {memory:?}, recompute {recompute}): gradients differ by {worst} (largest {scale})");
            compared += 1;
        }
        assert!(compared > 10, "only {compared} gradients compared");
    }
}

#[test]
fn head_gradient_equals_autodiff_untied() {
    check(false, MemoryKind::Linear);
}

#[test]
fn head_gradient_equals_autodiff_tied() {
    check(true, MemoryKind::Delta);
}

/// The tensor-op path (GPU backends) against the host path, on Flex.
#[test]
fn tensor_ops_path_equals_fused_path() {
    use burn::tensor::Distribution;
    use infini_train::loss::{HeadGradSum, head_grad};
    let device = Device::flex().autodiff();
    let mut config = ModelConfig::tiny(97);
    config.segment_len = 8;
    config.tie_embeddings = false;
    let model: InfiniLm = config.init(&device);
    let segment = &example(2, 8, 1, 97)[0];
    let hidden = Tensor::<3>::random([2, 8, config.d_model], Distribution::Normal(0.0, 3.0), &device).require_grad();
    let run = |fused: bool| {
        let mut sum = HeadGradSum::with_fused(&model, &device, fused);
        let head = head_grad(&model, hidden.clone(), segment, 0.1, &device, &mut sum);
        let grads = head.hidden_term.backward();
        let dh = hidden.grad(&grads).expect("hidden gradient").into_data().try_to_vec::<f32>().unwrap();
        let dw = sum.into_tensor(&device).expect("a gradient").into_data().try_to_vec::<f32>().unwrap();
        (head.nll_sum.into_scalar::<f32>(), dh, dw)
    };
    let (fused, tensor_ops) = (run(true), run(false));
    assert!((fused.0 - tensor_ops.0).abs() < 1e-4 * fused.0.abs(), "nll {} vs {}", fused.0, tensor_ops.0);
    for (name, a, b) in [("hidden", &fused.1, &tensor_ops.1), ("head weight", &fused.2, &tensor_ops.2)] {
        let largest = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(largest > 0.0 && worst <= 1e-5 * largest.max(1.0), "{name}: differ by {worst} (largest {largest})");
    }
}
