//! Data parallelism over several devices of one backend.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryState, ModelConfig};

use crate::backprop::{StepGrads, backprop_example};
use crate::optim::sum_device_grads;

/// Data parallelism: each device (the main one and the replicas) takes an equal share of the
/// streams of every example and runs forward and backward on its copy of the model, and the
/// gradients are summed onto the main device with Burn's `MultiGradientsParams`. The scale is
/// the whole step's, so the sum is the same per-token mean gradient as on one device.
/// Distinct devices work in parallel threads; shares on one device run one after the other
/// (two threads on one Flex autodiff device gave wrong results with Burn 0.22.1).
pub(crate) fn data_parallel(
    model: &InfiniLm,
    config: &ModelConfig,
    main: &Device,
    replicas: &[Device],
    batch_size: usize,
    examples: &[Vec<SegmentBatch>],
    window: crate::backprop::Window,
    step_seed: u64,
    scale: f64,
) -> (Tensor<1>, Option<MemoryState>, GradientsParams) {
    let devices: Vec<Device> = std::iter::once(main.clone()).chain(replicas.iter().cloned()).collect();
    let per = batch_size / devices.len();
    let work = |i: usize, device: &Device, model: InfiniLm| {
        let mut accumulator = StepGrads::new();
        let (mut losses, mut last) = (Vec::new(), None);
        for (e, example) in examples.iter().enumerate() {
            let share: Vec<SegmentBatch> = example.iter().map(|seg| seg.streams(i * per..(i + 1) * per)).collect();
            let memory = MemoryState::empty(config, per, device);
            let window = window.for_example(step_seed, e).for_streams(i * per);
            let (l, memory) = backprop_example(&model, &share, memory, window, scale, device, &mut accumulator);
            losses.push(l);
            last = Some(memory);
        }
        (Tensor::cat(losses, 0).sum(), last, accumulator.grads(&model), device.clone())
    };
    let replica = |i: usize, device: &Device| if i == 0 { model.clone() } else { model.clone().fork(device) };
    let distinct = devices.iter().enumerate().all(|(i, a)| devices[..i].iter().all(|b| a != b));
    let results: Vec<(Tensor<1>, Option<MemoryState>, GradientsParams, Device)> = if distinct {
        std::thread::scope(|scope| {
            let handles: Vec<_> = devices
                .iter()
                .enumerate()
                .map(|(i, device)| {
                    let model = replica(i, device);
                    scope.spawn(move || work(i, device, model))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a data-parallel worker panicked")).collect()
        })
    } else {
        devices.iter().enumerate().map(|(i, device)| work(i, device, replica(i, device))).collect()
    };
    // Each replica's loss moves to the main device, still unread.
    let loss = Tensor::cat(results.iter().map(|r| r.0.clone().to_device(main)).collect(), 0).sum();
    let memory = results[0].1.clone();
    let grads = results.into_iter().map(|(_, _, g, d)| (g, d)).collect();
    (loss, memory, sum_device_grads(model, grads, main))
}

