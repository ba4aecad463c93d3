//! The compressive memory of Infini-attention: `M` and `z` per layer, per head, per sequence.
//!
//! Memory is plain data passed into the model and returned by it, never stored inside a
//! module, so the caller decides when gradients stop flowing through it ([`MemoryState::detach`])
//! and when a stream starts a new document ([`MemoryState::reset`]).

use burn::tensor::{Bool, Device, Tensor, TensorData};

use crate::config::{MemoryKind, ModelConfig};

/// Smallest denominator used when reading the memory. An empty memory has `z = 0` and `M = 0`,
/// so the numerator is exactly zero and the read is `0 / DENOM_FLOOR = 0` rather than `0 / 0`.
/// A non-empty memory has denominators ≥ the number of tokens written times min σ, far above it.
pub const DENOM_FLOOR: f64 = 1e-6;

/// σ(x) = ELU(x) + 1, written as `relu(x) + exp(min(x, 0))` so that neither the value nor the
/// gradient overflows for large `x` (ELU's `exp(x) − 1` branch is never evaluated at large x).
pub fn sigma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    crate::host::map(x, crate::host::elu_plus_one, |x| x.clone().clamp_min(0.0) + x.clamp_max(0.0).exp())
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
    /// With grouped-query attention the memory has fewer heads than `sigma_q`: query heads
    /// `j·g .. (j+1)·g` all read the memory of key/value head `j`.
    pub fn retrieve(&self, sigma_q: Tensor<4>) -> Tensor<4> {
        let [b, h, n, dk] = sigma_q.dims();
        let kv = self.m.dims()[1];
        // [B, kv, g·N, d_k]: the rows of a query group read one memory (a plain reshape, since
        // the g query heads of a group are consecutive).
        let q = sigma_q.reshape([b, kv, h / kv * n, dk]);
        let numerator = q.clone().matmul(self.m.clone());
        let denominator = q.matmul(self.z.clone().unsqueeze_dim::<4>(3));
        let read = numerator / denominator.clamp_min(DENOM_FLOOR);
        let dv = read.dims()[3];
        read.reshape([b, h, n, dv])
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

/// Transformer-XL's memory (the `xl` baseline): keys (before RoPE) and values of the previous
/// segment, attended to without gradient, and which streams have a previous segment at all.
#[derive(Clone, Debug)]
pub struct XlCache {
    /// Keys `[B, H, P, d_k]`.
    pub k: Tensor<4>,
    /// Values `[B, H, P, d_v]`.
    pub v: Tensor<4>,
    /// Per stream: whether `k`/`v` hold a previous segment (false at a document start).
    pub valid: Vec<bool>,
}

/// One layer's memory.
#[derive(Clone, Debug)]
pub enum LayerMemory {
    /// Infini-attention's compressive memory.
    Compressive(Memory),
    /// The Transformer-XL baseline's cache of the previous segment.
    Xl(XlCache),
}

impl LayerMemory {
    /// The compressive memory, if this is one.
    pub fn compressive(&self) -> Option<&Memory> {
        match self {
            LayerMemory::Compressive(m) => Some(m),
            LayerMemory::Xl(_) => None,
        }
    }

    fn batch_size(&self) -> usize {
        match self {
            LayerMemory::Compressive(m) => m.z.dims()[0],
            LayerMemory::Xl(x) => x.valid.len(),
        }
    }
}

/// The memory of every layer for a batch of sequences (empty `layers` for `memory = "none"`).
#[derive(Clone, Debug)]
pub struct MemoryState {
    /// One [`LayerMemory`] per layer, in layer order.
    pub layers: Vec<LayerMemory>,
}

fn zero_streams<const D: usize>(t: Tensor<D>, reset: &[bool]) -> Tensor<D> {
    let b = reset.len();
    let mut shape = [1usize; D];
    shape[0] = b;
    let mask = Tensor::<1, Bool>::from_data(TensorData::new(reset.to_vec(), [b]), &t.device()).reshape(shape);
    let full = t.shape();
    // mask_fill rather than a multiply by 0, so that even a non-finite memory is emptied.
    t.mask_fill(mask.expand(full), 0.0)
}

impl MemoryState {
    /// Empty memory for `batch` sequences of the model `config` describes.
    pub fn empty(config: &ModelConfig, batch: usize, device: &Device) -> Self {
        let (h, d) = (config.kv_heads(), config.head_dim());
        let layer = || match config.memory {
            MemoryKind::Linear | MemoryKind::Delta => Some(LayerMemory::Compressive(Memory::empty(batch, h, d, d, device))),
            MemoryKind::Xl => Some(LayerMemory::Xl(XlCache {
                k: Tensor::zeros([batch, h, config.segment_len, d], device),
                v: Tensor::zeros([batch, h, config.segment_len, d], device),
                valid: vec![false; batch],
            })),
            MemoryKind::None => None,
        };
        Self { layers: (0..config.n_layers).filter_map(|_| layer()).collect() }
    }

    /// Cuts the autodiff graph: later losses send no gradient into earlier segments.
    pub fn detach(self) -> Self {
        self.map_tensors(Tensor::detach, Tensor::detach)
    }

    /// Applies `f4` to every 4-d tensor (M, the XL keys and values) and `f3` to every z, e.g. to
    /// move the state off or onto autodiff.
    pub fn map_tensors(self, f4: impl Fn(Tensor<4>) -> Tensor<4>, f3: impl Fn(Tensor<3>) -> Tensor<3>) -> Self {
        let layers = self
            .layers
            .into_iter()
            .map(|l| match l {
                LayerMemory::Compressive(m) => LayerMemory::Compressive(Memory { m: f4(m.m), z: f3(m.z) }),
                LayerMemory::Xl(x) => LayerMemory::Xl(XlCache { k: f4(x.k), v: f4(x.v), valid: x.valid }),
            })
            .collect();
        Self { layers }
    }

    /// Empties the memory of every stream `b` with `reset[b] == true`; other streams keep theirs.
    pub fn reset(self, reset: &[bool]) -> Self {
        if !reset.iter().any(|&r| r) || self.layers.is_empty() {
            return self;
        }
        let layers = self
            .layers
            .into_iter()
            .map(|l| match l {
                LayerMemory::Compressive(m) => {
                    LayerMemory::Compressive(m.map(|t| zero_streams(t, reset), |t| zero_streams(t, reset)))
                }
                LayerMemory::Xl(x) => LayerMemory::Xl(XlCache {
                    k: zero_streams(x.k, reset),
                    v: zero_streams(x.v, reset),
                    valid: x.valid.iter().zip(reset).map(|(&v, &r)| v && !r).collect(),
                }),
            })
            .collect();
        Self { layers }
    }

    /// The memory as if the segment that took `before` to `self` had been written `weight[b]`
    /// times into stream `b`: `before + w·(self − before)` for M and z of every compressive
    /// layer (the Transformer-XL cache is left as it is). For the linear rule with keys and
    /// values that do not depend on the memory (one layer) this is exactly the segment repeated
    /// `w` times; otherwise it scales the segment's write. `before` must be the memory the
    /// segment started from, after its document resets.
    pub fn reweight_write(self, before: &MemoryState, weight: &[f32]) -> Self {
        let b = weight.len();
        assert_eq!(b, self.batch_size(), "reweight_write: {b} weights for {} streams", self.batch_size());
        let layers = self
            .layers
            .into_iter()
            .zip(&before.layers)
            .map(|(after, before)| match (after, before) {
                (LayerMemory::Compressive(after), LayerMemory::Compressive(before)) => {
                    let device = after.z.device();
                    let w = Tensor::<1>::from_data(TensorData::new(weight.to_vec(), [b]), &device);
                    let (w4, w3) = (w.clone().reshape([b, 1, 1, 1]), w.reshape([b, 1, 1]));
                    LayerMemory::Compressive(Memory {
                        m: before.m.clone() + (after.m - before.m.clone()) * w4,
                        z: before.z.clone() + (after.z - before.z.clone()) * w3,
                    })
                }
                (after, _) => after,
            })
            .collect();
        Self { layers }
    }

    /// Number of sequences in the batch (0 when there is no memory).
    pub fn batch_size(&self) -> usize {
        self.layers.first().map_or(0, LayerMemory::batch_size)
    }

    /// Every tensor of the state as (shape, f32 values), layer by layer (`m, z` or `k, v, valid`),
    /// for saving; [`Self::from_parts`] reverses it.
    pub fn to_parts(&self) -> Vec<(Vec<usize>, Vec<f32>)> {
        fn part<const D: usize>(t: &Tensor<D>) -> (Vec<usize>, Vec<f32>) {
            (t.dims().to_vec(), t.clone().into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 memory"))
        }
        let mut parts = Vec::new();
        for layer in &self.layers {
            match layer {
                LayerMemory::Compressive(m) => parts.extend([part(&m.m), part(&m.z)]),
                LayerMemory::Xl(x) => {
                    parts.extend([part(&x.k), part(&x.v)]);
                    parts.push((vec![x.valid.len()], x.valid.iter().map(|&v| v as u8 as f32).collect()));
                }
            }
        }
        parts
    }

    /// Rebuilds a state of the model `config` from [`Self::to_parts`].
    pub fn from_parts(config: &ModelConfig, parts: Vec<(Vec<usize>, Vec<f32>)>, device: &Device) -> Result<Self, String> {
        fn t4(p: Option<(Vec<usize>, Vec<f32>)>, device: &Device) -> Result<Tensor<4>, String> {
            match p {
                Some((s, v)) if s.len() == 4 && s.iter().product::<usize>() == v.len() => {
                    Ok(Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2], s[3]]), device))
                }
                _ => Err("saved memory does not match the model".into()),
            }
        }
        let mut it = parts.into_iter();
        let mut layers = Vec::new();
        for _ in 0..config.n_layers {
            match config.memory {
                MemoryKind::None => {}
                MemoryKind::Linear | MemoryKind::Delta => {
                    let m = t4(it.next(), device)?;
                    let z = match it.next() {
                        Some((s, v)) if s.len() == 3 && s.iter().product::<usize>() == v.len() => {
                            Tensor::from_data(TensorData::new(v, [s[0], s[1], s[2]]), device)
                        }
                        _ => return Err("saved memory does not match the model".into()),
                    };
                    layers.push(LayerMemory::Compressive(Memory { m, z }));
                }
                MemoryKind::Xl => {
                    let (k, v) = (t4(it.next(), device)?, t4(it.next(), device)?);
                    let valid = it.next().ok_or("saved memory does not match the model")?.1.iter().map(|&x| x > 0.5).collect();
                    layers.push(LayerMemory::Xl(XlCache { k, v, valid }));
                }
            }
        }
        Ok(Self { layers })
    }
}
