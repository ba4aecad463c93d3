//! The loss over the vocabulary on the CPU, fused: for each row of logits, one pass for the
//! maximum, one for `exp` and its sum, one for the gradient `w·(softmax − onehot)`, with the row
//! in cache and the rows spread over the threads. On Flex this replaces a dozen single-threaded
//! whole-tensor passes (each with its own allocation) of the tensor-op formulation.

use super::simd::{Kernel, vectorized};
use super::{exp_shifted_sum, row_max};
use rayon::prelude::*;

/// For logits `[rows, vocab]` (row-major, overwritten): returns each row's `−log softmax` at
/// its target, and turns the logits into `weights[r] · (softmax − onehot(target))` — the
/// gradient of `Σ_r weights[r] · nll[r]`. Rows of weight 0 get a zero gradient (their NLL is
/// still computed).
pub fn nll_and_grad(logits: &mut [f32], vocab: usize, targets: &[u32], weights: &[f32]) -> Vec<f32> {
    assert_eq!(logits.len(), targets.len() * vocab, "logits and targets disagree");
    assert_eq!(targets.len(), weights.len(), "targets and weights disagree");
    logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter().zip(weights.par_iter()))
        .map(|(row, (&target, &w))| vectorized(NllGradRow { row, target: target as usize, weight: w }))
        .collect()
}

/// Each row's `−log softmax` at its target, leaving `logits` as scratch.
pub fn nll(logits: &mut [f32], vocab: usize, targets: &[u32]) -> Vec<f32> {
    assert_eq!(logits.len(), targets.len() * vocab, "logits and targets disagree");
    logits
        .par_chunks_mut(vocab)
        .zip(targets.par_iter())
        .map(|(row, &target)| vectorized(NllRow { row, target: target as usize }))
        .collect()
}

/// One row of [`nll_and_grad`].
struct NllGradRow<'a> {
    row: &'a mut [f32],
    target: usize,
    weight: f32,
}

impl Kernel for NllGradRow<'_> {
    type Output = f32;
    #[inline(always)]
    fn run(self) -> f32 {
        let (row, target, w) = (self.row, self.target, self.weight);
        let target_logit = row[target];
        let max = row_max(row);
        let sum = exp_shifted_sum(row, max);
        let scale = w / sum;
        for v in row.iter_mut() {
            *v *= scale;
        }
        row[target] -= w;
        sum.ln() + max - target_logit
    }
}

/// One row of [`nll`].
struct NllRow<'a> {
    row: &'a mut [f32],
    target: usize,
}

impl Kernel for NllRow<'_> {
    type Output = f32;
    #[inline(always)]
    fn run(self) -> f32 {
        let target_logit = self.row[self.target];
        let max = row_max(self.row);
        exp_shifted_sum(self.row, max).ln() + max - target_logit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_matches_a_direct_computation() {
        let (rows, vocab) = (5, 37);
        let mut logits: Vec<f32> = (0..rows * vocab).map(|i| ((i * 7919) % 101) as f32 / 9.0 - 5.0).collect();
        let original = logits.clone();
        let targets = [0u32, 36, 5, 5, 20];
        let weights = [0.5f32, 1.0, 0.0, 2.0, 0.25];
        let nll = nll_and_grad(&mut logits, vocab, &targets, &weights);
        for r in 0..rows {
            let row = &original[r * vocab..(r + 1) * vocab];
            let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
            let expected = z.ln() - row[targets[r] as usize] as f64;
            assert!((nll[r] as f64 - expected).abs() < 1e-5, "row {r}: {} vs {expected}", nll[r]);
            for c in 0..vocab {
                let p = (row[c] as f64).exp() / z;
                let g = weights[r] as f64 * (p - if c == targets[r] as usize { 1.0 } else { 0.0 });
                assert!((logits[r * vocab + c] as f64 - g).abs() < 1e-6, "row {r} col {c}");
            }
        }
        let mut scratch = original.clone();
        assert_eq!(super::nll(&mut scratch, vocab, &targets), nll);
    }
}
