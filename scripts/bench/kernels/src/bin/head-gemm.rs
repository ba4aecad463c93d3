// The output head's three products with row-major buffers, as Flex holds them, by gemm 0.19 (what
// Flex uses) and by faer: logits[t,v] = h[t,d]·W[d,v]; gh[t,d] = g[t,v]·Wᵀ; gW[d,v] = hᵀ·g.
use std::time::Instant;
use faer::{MatMut, MatRef, Par};
fn best(mut f: impl FnMut()) -> f64 { let mut b = f64::MAX; for _ in 0..4 { let t = Instant::now(); f(); b = b.min(t.elapsed().as_secs_f64()); } b }
fn main() {
    let th = rayon::current_num_threads();
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (t, d, v) = if args.len() == 3 { (args[0], args[1], args[2]) } else { (2048, 256, 32000) };
    let h: Vec<f32> = (0..t * d).map(|x| (x % 13) as f32 / 13.0 - 0.5).collect();
    let w: Vec<f32> = (0..d * v).map(|x| (x % 11) as f32 / 11.0 - 0.5).collect();
    let g: Vec<f32> = (0..t * v).map(|x| (x % 7) as f32 / 7.0 - 0.5).collect();
    let mut logits = vec![0f32; t * v];
    let mut gh = vec![0f32; t * d];
    let mut gw = vec![0f32; d * v];
    let flop = 2.0 * (t * d * v) as f64 / 1e9;
    let hr = MatRef::from_row_major_slice(&h, t, d);
    let wr = MatRef::from_row_major_slice(&w, d, v);
    let gr = MatRef::from_row_major_slice(&g, t, v);
    let f1 = best(|| faer::linalg::matmul::matmul(MatMut::from_row_major_slice_mut(&mut logits, t, v), faer::Accum::Replace, hr, wr, 1.0f32, Par::rayon(th)));
    let f2 = best(|| faer::linalg::matmul::matmul(MatMut::from_row_major_slice_mut(&mut gh, t, d), faer::Accum::Replace, gr, wr.transpose(), 1.0f32, Par::rayon(th)));
    let f3 = best(|| faer::linalg::matmul::matmul(MatMut::from_row_major_slice_mut(&mut gw, d, v), faer::Accum::Replace, hr.transpose(), gr, 1.0f32, Par::rayon(th)));
    let check = logits[12345 % (t * v)];
    let p = gemm::Parallelism::Rayon(th);
    let g1 = best(|| unsafe { gemm::gemm(t, v, d, logits.as_mut_ptr(), 1, v as isize, false, h.as_ptr(), 1, d as isize, w.as_ptr(), 1, v as isize, 0.0f32, 1.0f32, false, false, false, p) });
    assert!((logits[12345 % (t * v)] - check).abs() < 1e-3);
    // gh = g·Wᵀ: Wᵀ[v,d] has row stride 1, column stride v
    let g2 = best(|| unsafe { gemm::gemm(t, d, v, gh.as_mut_ptr(), 1, d as isize, false, g.as_ptr(), 1, v as isize, w.as_ptr(), v as isize, 1, 0.0f32, 1.0f32, false, false, false, p) });
    // gW = hᵀ·g: hᵀ[d,t] has column stride d, row stride 1
    let g3 = best(|| unsafe { gemm::gemm(d, v, t, gw.as_mut_ptr(), 1, v as isize, false, h.as_ptr(), d as isize, 1, g.as_ptr(), 1, v as isize, 0.0f32, 1.0f32, false, false, false, p) });
    // the same g·Wᵀ computed as its transpose W·gᵀ into gh's layout (gemm sees m = d, n = t)
    let g2t = best(|| unsafe { gemm::gemm(d, t, v, gh.as_mut_ptr(), d as isize, 1, false, w.as_ptr(), 1, v as isize, g.as_ptr(), v as isize, 1, 0.0f32, 1.0f32, false, false, false, p) });
    // g·Wᵀ in vocabulary blocks of 4096, accumulating (the rows of W and g stay in cache)
    let blk = 4096;
    let g2b = best(|| { for (i, c) in (0..v).step_by(blk).enumerate() { let n = blk.min(v - c); unsafe { gemm::gemm(t, d, n, gh.as_mut_ptr(), 1, d as isize, i > 0, g.as_ptr().add(c), 1, v as isize, w.as_ptr().add(c), v as isize, 1, 1.0f32, 1.0f32, false, false, false, p) } } });
    println!("grad h as (W·gᵀ)ᵀ: {:.1} GFLOP/s; in vocabulary blocks of {blk}: {:.1} GFLOP/s", flop / g2t, flop / g2b);
    println!("t={t} d={d} v={v} threads={th}");
    for (name, a, b) in [("logits = h·W", f1, g1), ("grad h = g·Wᵀ", f2, g2), ("grad W = hᵀ·g", f3, g3)] {
        println!("{name:<16} faer {:>6.1} GFLOP/s   gemm {:>6.1} GFLOP/s   ({:.2}x)", flop / a, flop / b, b / a);
    }
}
