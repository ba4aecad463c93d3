//! Rotary position embedding for the local attention path (half-split layout, as in LLaMA).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

/// Precomputed cos/sin tables for positions `0..max_len` inside a segment.
#[derive(Module, Debug)]
pub struct Rope {
    /// `[max_len, head_dim]`: cos(pos · θ_i), each frequency repeated in both halves.
    cos: Tensor<2>,
    /// `[max_len, head_dim]`: sin(pos · θ_i), likewise.
    sin: Tensor<2>,
}

impl Rope {
    /// Tables for `max_len` positions of `head_dim` (even) channels with base `theta`.
    pub fn new(max_len: usize, head_dim: usize, theta: f64, device: &Device) -> Self {
        assert!(head_dim % 2 == 0, "RoPE needs an even head_dim, got {head_dim}");
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
        let inv_freq = Tensor::<1>::from_floats(inv_freq.as_slice(), device).reshape([1, half]);
        let pos = Tensor::<1, Int>::arange(0..max_len as i64, device).float().reshape([max_len, 1]);
        let angles = pos.matmul(inv_freq);
        let angles = Tensor::cat(vec![angles.clone(), angles], 1);
        Self { cos: angles.clone().cos(), sin: angles.sin() }
    }

    /// Rotates `x: [B, H, n, head_dim]` as if its tokens sat at positions `start..start + n`.
    pub fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let [_, _, n, d] = x.dims();
        let max_len = self.cos.dims()[0];
        assert!(start + n <= max_len, "RoPE table holds {max_len} positions, asked for {}..{}", start, start + n);
        let cos = self.cos.clone().slice([start..start + n]);
        let sin = self.sin.clone().slice([start..start + n]);
        if crate::host::fused(&x.device()) {
            let table = |t: &Tensor<2>| std::sync::Arc::new(t.clone().into_data().try_to_vec::<f32>().expect("f32 table"));
            let tables = crate::host::layers::RopeTables { cos: table(&cos), sin: table(&sin), d };
            if let Some(y) = crate::host::layers::rope(x.clone(), tables) {
                return y;
            }
        }
        let (cos, sin) = (cos.reshape([1, 1, n, d]), sin.reshape([1, 1, n, d]));
        let half = d / 2;
        let x1 = x.clone().slice_dim(3, 0..half);
        let x2 = x.clone().slice_dim(3, half..d);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}
