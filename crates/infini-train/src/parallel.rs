//! Data parallelism over several devices of one backend.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use infini_data::SegmentBatch;
use infini_model::{InfiniLm, MemoryState, ModelConfig};

use crate::backprop::{StepGrads, backprop_example, mean_memory_norm};
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
    scale: f64,
) -> (f64, Option<f64>, GradientsParams) {
    let devices: Vec<Device> = std::iter::once(main.clone()).chain(replicas.iter().cloned()).collect();
    let per = batch_size / devices.len();
    let work = |i: usize, device: &Device, model: InfiniLm| {
        let mut accumulator = StepGrads::new();
        let (mut loss, mut norm) = (0.0, None);
        for example in examples {
            let share: Vec<SegmentBatch> = example.iter().map(|seg| seg.streams(i * per..(i + 1) * per)).collect();
            let memory = MemoryState::empty(config, per, device);
            let (l, memory) = backprop_example(&model, &share, memory, window, scale, device, &mut accumulator);
            loss += l;
            norm = mean_memory_norm(&memory);
        }
        (loss, norm, accumulator.grads(&model), device.clone())
    };
    let replica = |i: usize, device: &Device| if i == 0 { model.clone() } else { model.clone().fork(device) };
    let distinct = devices.iter().enumerate().all(|(i, a)| devices[..i].iter().all(|b| a != b));
    let results: Vec<(f64, Option<f64>, GradientsParams, Device)> = if distinct {
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
    let loss = results.iter().map(|r| r.0).sum();
    let memory_norm = results[0].1;
    let grads = results.into_iter().map(|(_, _, g, d)| (g, d)).collect();
    (loss, memory_norm, sum_device_grads(model, grads, main))
}

