//! The host loops compiled for the widest vector instructions the CPU has, chosen at run time.
//!
//! The binary is built for baseline x86-64 (SSE2: 4 f32 lanes), so that it runs on any x86
//! machine. [`vectorized`] runs a closure inside a function compiled with AVX-512 (16 lanes) or
//! AVX2 (8 lanes) when the CPU has them, so that the loops inlined into it (`exp`, the row
//! maximum and sum, the element-wise maps, AdamW) are vectorised that wide. The arithmetic is the
//! same in every variant (Rust never fuses a multiply and an add on its own), so results are
//! identical bit for bit whichever runs; `INFINI_SIMD=baseline|avx2|avx512` caps the choice (to
//! compare them).

use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction sets a [`vectorized`] closure may be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// What the binary is built for (SSE2 on x86-64), and every other architecture.
    Baseline = 1,
    /// AVX2 and FMA.
    Avx2 = 2,
    /// AVX-512 (F, BW, VL, DQ).
    Avx512 = 3,
}

static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The instruction set [`vectorized`] uses here: the widest the CPU has, capped by
/// `INFINI_SIMD` if set.
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Isa::Baseline,
        2 => Isa::Avx2,
        3 => Isa::Avx512,
        _ => {
            let isa = detect().min(cap());
            CHOSEN.store(isa as u8, Ordering::Relaxed);
            isa
        }
    }
}

fn cap() -> Isa {
    match std::env::var("INFINI_SIMD").as_deref().map(str::trim) {
        Ok("baseline") => Isa::Baseline,
        Ok("avx2") => Isa::Avx2,
        _ => Isa::Avx512,
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Baseline
}

/// A loop to run [`vectorized`]: its data are the fields, [`Kernel::run`] the loop.
pub trait Kernel {
    /// What the loop returns.
    type Output;
    /// The loop. Implementations are marked `#[inline(always)]`, as are the functions they
    /// call, so that all of it is compiled inside the instruction set's function (a closure or
    /// a function item would be called through a shim, compiled for the baseline).
    fn run(self) -> Self::Output;
}

/// `kernel.run()`, compiled for [`isa`].
#[inline(always)]
pub fn vectorized<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    match isa() {
        // SAFETY: `isa` chose these only after detecting every feature they enable.
        Isa::Avx512 => return unsafe { avx512(kernel) },
        Isa::Avx2 => return unsafe { avx2(kernel) },
        Isa::Baseline => {}
    }
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant this CPU can run gives the same bits as the baseline.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        struct Softmax(Vec<f32>);
        impl Kernel for Softmax {
            type Output = (u32, u32, Vec<u32>);
            #[inline(always)]
            fn run(mut self) -> Self::Output {
                let max = super::super::row_max(&self.0);
                let sum = super::super::exp_shifted_sum(&mut self.0, max);
                (max.to_bits(), sum.to_bits(), self.0.iter().map(|v| v.to_bits()).collect())
            }
        }
        let x: Vec<f32> = (0..4099).map(|i| ((i * 7919) % 2003) as f32 / 37.0 - 27.0).collect();
        let baseline = Softmax(x.clone()).run();
        #[cfg(target_arch = "x86_64")]
        {
            if detect() >= Isa::Avx2 {
                // SAFETY: detected above.
                assert_eq!(unsafe { avx2(Softmax(x.clone())) }, baseline);
            }
            if detect() >= Isa::Avx512 {
                // SAFETY: detected above.
                assert_eq!(unsafe { avx512(Softmax(x.clone())) }, baseline);
            }
        }
        assert_eq!(vectorized(Softmax(x)), baseline);
    }
}
