//! The compressive memory of Infini-attention: `M` and `z` per layer, per head, per sequence.
//!
//! Memory is plain data passed into the model and returned by it, never stored inside a
//! module, so the caller decides when gradients stop flowing through it ([`MemoryState::detach`])
//! and when a stream starts a new document ([`MemoryState::reset`]).

use burn::tensor::{Bool, Device, Tensor, TensorData};

use crate::config::ModelConfig;

/// Smallest denominator used when reading the memory. An empty memory has `z = 0` and `M = 0`,
/// so the numerator is exactly zero and the read is `0 / DENOM_FLOOR = 0` rather than `0 / 0`.
/// A non-empty memory has denominators ≥ the number of tokens written times min σ, far above it.
pub const DENOM_FLOOR: f64 = 1e-6;

/// σ(x) = ELU(x) + 1, written as `relu(x) + exp(min(x, 0))` so that neither the value nor the
/// gradient overflows for large `x` (ELU's `exp(x) − 1` branch is never evaluated at large x).
pub fn sigma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone().clamp_min(0.0) + x.clamp_max(0.0).exp()
}

/// One layer's memory: `m: [B, H, d_k, d_v]` and `z: [B, H, d_k]`, always f32.
#[derive(Clone, Debug)]
pub struct Memory {
    /// Associative matrix, sum of σ(K)ᵀV over the segments seen.
    pub m: Tensor<4>,
    /// Normalisation term, sum of σ(K) over the tokens seen.
    pub z: Tensor<3>,
}

impl Memory {
    /// An empty memory for `batch` sequences.
    pub fn empty(batch: usize, heads: usize, d_k: usize, d_v: usize, device: &Device) -> Self {
        Self { m: Tensor::zeros([batch, heads, d_k, d_v], device), z: Tensor::zeros([batch, heads, d_k], device) }
    }

    /// `σ(q) M / (σ(q) z)` for `sigma_q: [B, H, N, d_k]`, giving `[B, H, N, d_v]`; zero for an empty memory.
    pub fn retrieve(&self, sigma_q: Tensor<4>) -> Tensor<4> {
        let numerator = sigma_q.clone().matmul(self.m.clone());
        let denominator = sigma_q.matmul(self.z.clone().unsqueeze_dim::<4>(3));
        numerator / denominator.clamp_min(DENOM_FLOOR)
    }

    /// Linear update: `M + σ(K)ᵀV`, `z + Σ_t σ(K_t)`.
    pub fn update_linear(self, sigma_k: Tensor<4>, v: Tensor<4>) -> Self {
        let z = self.z + sigma_k.clone().sum_dim(2).squeeze_dim::<3>(2);
        let m = self.m + sigma_k.swap_dims(2, 3).matmul(v);
        Self { m, z }
    }

    /// Delta update: `M + σ(K)ᵀ(V − σ(K)M / σ(K)z)`, `z` as in the linear rule.
    pub fn update_delta(self, sigma_k: Tensor<4>, v: Tensor<4>) -> Self {
        let already_stored = self.retrieve(sigma_k.clone());
        let z = self.z + sigma_k.clone().sum_dim(2).squeeze_dim::<3>(2);
        let m = self.m + sigma_k.swap_dims(2, 3).matmul(v - already_stored);
        Self { m, z }
    }

    fn map(self, f: impl Fn(Tensor<4>) -> Tensor<4>, g: impl Fn(Tensor<3>) -> Tensor<3>) -> Self {
        Self { m: f(self.m), z: g(self.z) }
    }
}

/// The memory of every layer for a batch of sequences (empty `layers` for `memory = "none"`).
#[derive(Clone, Debug)]
pub struct MemoryState {
    /// One [`Memory`] per layer, in layer order.
    pub layers: Vec<Memory>,
}

impl MemoryState {
    /// Empty memory for `batch` sequences of the model `config` describes.
    pub fn empty(config: &ModelConfig, batch: usize, device: &Device) -> Self {
        let layers = if config.memory.has_memory() {
            let (h, d) = (config.n_heads, config.head_dim());
            (0..config.n_layers).map(|_| Memory::empty(batch, h, d, d, device)).collect()
        } else {
            Vec::new()
        };
        Self { layers }
    }

    /// Cuts the autodiff graph: later losses send no gradient into earlier segments.
    pub fn detach(self) -> Self {
        self.map(Tensor::detach, Tensor::detach)
    }

    /// Empties the memory of every stream `b` with `reset[b] == true`; other streams keep theirs.
    pub fn reset(self, reset: &[bool]) -> Self {
        if !reset.iter().any(|&r| r) || self.layers.is_empty() {
            return self;
        }
        let device = self.layers[0].z.device();
        let b = reset.len();
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(reset.to_vec(), [b]), &device);
        let mask4 = mask.clone().reshape([b, 1, 1, 1]);
        let mask3 = mask.reshape([b, 1, 1]);
        // mask_fill rather than a multiply by 0, so that even a non-finite memory is emptied.
        self.map(
            |m| {
                let shape = m.shape();
                m.mask_fill(mask4.clone().expand(shape), 0.0)
            },
            |z| {
                let shape = z.shape();
                z.mask_fill(mask3.clone().expand(shape), 0.0)
            },
        )
    }

    /// Number of sequences in the batch (0 when there is no memory).
    pub fn batch_size(&self) -> usize {
        self.layers.first().map_or(0, |l| l.z.dims()[0])
    }

    /// Total f32 values held, over all layers and sequences.
    pub fn num_floats(&self) -> usize {
        self.layers.iter().map(|l| l.m.shape().num_elements() + l.z.shape().num_elements()).sum()
    }

    fn map(self, f: impl Fn(Tensor<4>) -> Tensor<4>, g: impl Fn(Tensor<3>) -> Tensor<3>) -> Self {
        Self { layers: self.layers.into_iter().map(|l| l.map(&f, &g)).collect() }
    }
}
