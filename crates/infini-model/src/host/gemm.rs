//! Matrix products on the host (Flex, f32) through [gemm] (the crate Flex calls), straight into
//! buffers of our own: Flex allocates each product's output zero-filled and then copies it into
//! a second, more aligned allocation; here gemm writes into a fresh `Vec` that is handed on as it
//! is (or adds into an existing sum).

/// Products of at least this many multiply-adds run on all threads. Flex's threshold, 192³,
/// left the small models' projections (e.g. 256 rows × 128 × 128: 4.2M) on one thread; at 2²⁰
/// (about 10 µs of work) the passkey demo's step is about 7% faster on 2 cores.
const PARALLEL_OPS: usize = 1 << 20;

/// A matrix in a slice: element (i, j) at `i·rs + j·cs`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a {rows}x{cols} matrix needs {} values, got {}", rows * cols, data.len());
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    /// Its transpose (a view).
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// Panics unless every element lies inside `data` (what makes the raw call below sound).
    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view reaches past its data");
        }
    }
}

/// `dst = a·b` (`accumulate`: `dst += a·b`) for a row-major `dst: [a.rows, b.cols]`.
pub fn gemm_into(dst: *mut f32, dst_len: usize, accumulate: bool, a: Mat, b: Mat) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ: {m}x{k} times {}x{n}", b.rows);
    assert_eq!(dst_len, m * n, "output of {m}x{n} needs {} values", m * n);
    a.check();
    b.check();
    let parallelism = if m * n * k >= PARALLEL_OPS { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the views were checked to lie inside their slices, `dst` holds m·n values (read
    // only when accumulating, and then initialised by the caller), and nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A fresh row-major `a·b`.
pub fn product(a: Mat, b: Mat) -> Vec<f32> {
    let len = a.rows * b.cols;
    if a.cols == 0 {
        return vec![0.0; len];
    }
    let mut out = Vec::with_capacity(len);
    gemm_into(out.as_mut_ptr(), len, false, a, b);
    // SAFETY: with an inner dimension of at least 1, gemm wrote all `len` values.
    unsafe { out.set_len(len) };
    out
}
