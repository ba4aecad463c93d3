use std::time::Instant;
use burn::tensor::{Device, Distribution, Tensor};
fn t(name: &str, a: Tensor<2>, b: Tensor<2>) {
    let [m, k] = a.dims(); let n = b.dims()[1];
    let mut best = f64::MAX;
    for _ in 0..6 { let s = Instant::now(); let o = a.clone().matmul(b.clone()); let _ = o.slice([0..1, 0..1]).into_scalar::<f32>(); best = best.min(s.elapsed().as_secs_f64()); }
    eprintln!("{name:<50} {:>7.1} GFLOP/s {:>6.1} ms", 2.0 * (m * k * n) as f64 / best / 1e9, best * 1e3);
}
fn main() {
    infini_train::alloc::keep_freed_memory();
    let d = Device::flex();
    let r = |s: [usize; 2]| Tensor::<2>::random(s, Distribution::Default, &d);
    for tok in [256, 512, 2048] {
        t(&format!("t={tok} h[t,d]·W[d,V]"), r([tok, 256]), r([256, 32000]));
        t(&format!("t={tok} h[t,d]·E[V,d]ᵀ"), r([tok, 256]), r([32000, 256]).transpose());
        t(&format!("t={tok} (E[V,d]·hᵀ) → [V,t]"), r([32000, 256]), r([tok, 256]).transpose());
        t(&format!("t={tok} (Wᵀ·hᵀ) → [V,t]"), r([256, 32000]).transpose(), r([tok, 256]).transpose());
    }
    t("ffn [256,256]·[256,1024]", r([256, 256]), r([256, 1024]));
    t("ffn [256,256]·[256,2048]", r([256, 256]), r([256, 2048]));
    t("qkv [256,256]·[256,768]", r([256, 256]), r([256, 768]));
    t("q [256,256]·[256,256]", r([256, 256]), r([256, 256]));
}
