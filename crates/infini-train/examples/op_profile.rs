//! Times pieces of the model's forward on one segment (Flex, configs/bench.toml sizes).
use std::time::Instant;
use burn::tensor::{Device, Distribution, Tensor};
use burn::tensor::activation::silu;

fn time(name: &str, f: impl Fn()) {
    f();
    let start = Instant::now();
    let n = 20;
    for _ in 0..n { f(); }
    eprintln!("{name:<44} {:>8.3} ms", start.elapsed().as_secs_f64() * 1000.0 / n as f64);
}

fn main() {
    infini_train::alloc::keep_freed_memory();
    for ad in [false, true] {
        let device = if ad { Device::flex().autodiff() } else { Device::flex() };
        eprintln!("autodiff: {ad}");
        let x3 = Tensor::<3>::random([1, 256, 256], Distribution::Default, &device);
        let x2 = Tensor::<2>::random([256, 256], Distribution::Default, &device);
        let w = Tensor::<2>::random([256, 1024], Distribution::Default, &device);
        let h = Tensor::<2>::random([256, 1024], Distribution::Default, &device);
        time("matmul 2d [256,256]x[256,1024]", || { let _ = x2.clone().matmul(w.clone()); });
        time("linear 3d [1,256,256]x[256,1024]", || { let _ = burn::tensor::module::linear(x3.clone(), w.clone(), None); });
        time("matmul 3d x unsqueeze", || { let _ = x3.clone().matmul(w.clone().unsqueeze::<3>()); });
        time("silu [256,1024]", || { let _ = silu(h.clone()); });
        time("exp [256,1024]", || { let _ = h.clone().exp(); });
        time("mul [256,1024]", || { let _ = h.clone() * h.clone(); });
        time("add [256,1024]", || { let _ = h.clone() + h.clone(); });
        time("mul_scalar [256,1024]", || { let _ = h.clone().mul_scalar(2.0); });
        time("clone+add (no alias) [256,1024]", || { let a = h.clone() + 0.0; let _ = a + 1.0; });
    }
}
