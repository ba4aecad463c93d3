//! AdamW's update as one threaded pass over a parameter's values (Burn's own takes about fifteen
//! single-threaded whole-tensor passes on Flex), with the same arithmetic in the same order.

use rayon::prelude::*;

/// AdamW's hyper-parameters for one update.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Denominator floor.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Step count, from 1 (for the bias corrections).
    pub time: usize,
}

/// Updates weights `w` and moments `m`, `v` in place from gradient `g`.
pub fn update(w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: AdamWStep) {
    let (b1, b2, eps) = (s.beta_1, s.beta_2, s.epsilon);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let (c1, c2) = (1f32 - b1.powi(s.time as i32), 1f32 - b2.powi(s.time as i32));
    let decay = (1.0 - s.lr * s.weight_decay as f64) as f32;
    let lr = s.lr as f32;
    const CHUNK: usize = 1 << 14;
    let constants = [b1, b2, f1, f2, c1, c2, eps, decay, lr];
    w.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK))).zip(g.par_chunks(CHUNK)).for_each(|((w, (m, v)), g)| {
        super::simd::vectorized(Chunk { w, m, v, g, constants })
    });
}

/// One chunk of [`update`].
struct Chunk<'a> {
    w: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    g: &'a [f32],
    constants: [f32; 9],
}

impl super::simd::Kernel for Chunk<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Chunk { w, m, v, g, constants: [b1, b2, f1, f2, c1, c2, eps, decay, lr] } = self;
        for i in 0..w.len() {
            m[i] = m[i] * b1 + g[i] * f1;
            v[i] = v[i] * b2 + g[i] * g[i] * f2;
            let delta = (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            w[i] = w[i] * decay - delta * lr;
        }
    }
}
