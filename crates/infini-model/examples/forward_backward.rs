//! Times forward + backward of one batch through all its segments with full backprop.
//!
//! `cargo run --release -p infini-model --example forward_backward -- configs/tiny.toml 2048 1`

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_data::toml_file::{ModelTable, read};
use infini_model::{MemoryState, ModelConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("configs/tiny.toml", String::as_str);
    let len: usize = args.get(2).map_or(2048, |s| s.parse().expect("length"));
    let batch: usize = args.get(3).map_or(1, |s| s.parse().expect("batch"));
    let config = read::<ModelTable<ModelConfig>>(path.as_ref()).unwrap_or_else(|e| panic!("{e}")).model;
    let device = Device::flex().autodiff();
    let model = config.init(&device);
    let n = config.segment_len;
    assert!(len % n == 0, "length must be a multiple of segment_len {n}");
    let ids: Vec<i64> = (0..batch * len).map(|i| (i * 7919 % config.vocab_size) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), &device);
    for round in 0..3 {
        let start = Instant::now();
        let mut memory = MemoryState::empty(&config, batch, &device);
        let mut loss: Option<Tensor<1>> = None;
        for s in 0..len / n {
            let seg = tokens.clone().slice([0..batch, s * n..(s + 1) * n]);
            let (logits, next) = model.forward(seg, memory, &[]);
            memory = next;
            let l = logits.powi_scalar(2).mean();
            loss = Some(loss.map_or(l.clone(), |p| p + l));
        }
        let forward = start.elapsed();
        let grads = loss.unwrap().backward();
        drop(grads);
        let total = start.elapsed();
        println!(
            "round {round}: {len} tokens × {batch}: forward {:.3}s, forward+backward {:.3}s ({:.0} tokens/s)",
            forward.as_secs_f64(),
            total.as_secs_f64(),
            (len * batch) as f64 / total.as_secs_f64()
        );
    }
}
