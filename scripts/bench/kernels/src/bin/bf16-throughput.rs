// Throughput of AVX-512 f32 FMA against AVX512-BF16 dot products (vdpbf16ps) on one core,
// 12 independent accumulators each: FLOP per instruction 32 (FMA: 16 lanes x 2) vs 64 (16 lanes x 2 pairs x 2).
use std::arch::x86_64::*;
use std::time::Instant;
#[target_feature(enable = "avx512f")]
unsafe fn fma(n: usize) -> f32 {
    let a = _mm512_set1_ps(1.0001); let b = _mm512_set1_ps(0.9999);
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..n { for r in acc.iter_mut() { *r = _mm512_fmadd_ps(a, b, *r); } }
    let mut s = _mm512_setzero_ps(); for r in acc { s = _mm512_add_ps(s, r); } _mm512_reduce_add_ps(s)
}
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dp(n: usize) -> f32 {
    let a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0), _mm512_set1_ps(1.0));
    let b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5), _mm512_set1_ps(0.5));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..n { for r in acc.iter_mut() { *r = _mm512_dpbf16_ps(*r, a, b); } }
    let mut s = _mm512_setzero_ps(); for r in acc { s = _mm512_add_ps(s, r); } _mm512_reduce_add_ps(s)
}
fn main() {
    let n = 50_000_000;
    for _ in 0..3 {
        let t = Instant::now(); let x = unsafe { fma(n) }; let f = (n * 12 * 32) as f64 / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now(); let y = unsafe { dp(n) }; let d = (n * 12 * 64) as f64 / t.elapsed().as_secs_f64() / 1e9;
        println!("one thread: f32 FMA {f:.1} GFLOP/s, bf16 dot {d:.1} GFLOP/s ({:.2}x)  [{x} {y}]", d / f);
    }
}
