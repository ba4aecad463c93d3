//! Infini-attention: causal local attention inside a segment, mixed per head with a read from
//! the compressive memory of the earlier segments, which is then updated with this segment.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::config::{MemoryKind, ModelConfig};
use crate::memory::{LayerMemory, XlCache, sigma};
use crate::precision::{Compute, linear, scaled_attention};
use crate::rope::Rope;

/// One layer's Infini-attention.
#[derive(Module, Debug)]
pub struct InfiniAttention {
    /// Query projection `d_model → heads · d_k`.
    pub wq: Linear,
    /// Key projection `d_model → kv_heads · d_k`.
    pub wk: Linear,
    /// Value projection `d_model → kv_heads · d_v`.
    pub wv: Linear,
    /// Output projection `heads · d_v → d_model`.
    pub wo: Linear,
    /// Gate β, one scalar per head: `sigmoid(β)` weighs the memory path. Absent for `memory = "none"`.
    pub beta: Option<Param<Tensor<1>>>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    #[module(skip)]
    update: MemoryKind,
    /// Type of the matrix products (`None` = f32); see [`crate::precision`].
    #[module(skip)]
    pub compute: Compute,
}

fn new_linear(d_in: usize, d_out: usize, std: f64, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device)
}

impl InfiniAttention {
    /// Builds the layer; `out_std` initialises the output projection (scaled down with depth).
    pub fn new(config: &ModelConfig, out_std: f64, device: &Device) -> Self {
        let (d, h, kv, dk) = (config.d_model, config.n_heads, config.kv_heads(), config.head_dim());
        let std = config.init_std;
        let beta = config.memory.has_memory().then(|| {
            Initializer::Constant { value: config.gate_init }.init([h], device)
        });
        Self {
            wq: new_linear(d, h * dk, std, device),
            wk: new_linear(d, kv * dk, std, device),
            wv: new_linear(d, kv * dk, std, device),
            wo: new_linear(h * dk, d, out_std, device),
            beta,
            n_heads: h,
            n_kv_heads: kv,
            head_dim: dk,
            update: config.memory,
            compute: None,
        }
    }

    /// `[B, N, heads·d] → [B, heads, N, d]`: split the channels into heads, then move heads before time.
    fn split_heads(&self, x: Tensor<3>, heads: usize) -> Tensor<4> {
        let [b, n, _] = x.dims();
        x.reshape([b, n, heads, self.head_dim]).swap_dims(1, 2)
    }

    /// `[B, kv_heads, N, d] → [B, heads, N, d]`: each key/value head repeated for the query
    /// heads of its group (grouped-query attention; nothing to do when the counts are equal).
    fn repeat_kv(&self, x: Tensor<4>) -> Tensor<4> {
        let group = self.n_heads / self.n_kv_heads;
        if group == 1 {
            return x;
        }
        let [b, kv, n, d] = x.dims();
        x.unsqueeze_dim::<5>(2).expand([b, kv, group, n, d]).reshape([b, kv * group, n, d])
    }

    /// `[B, H, N, d] → [B, N, H·d]`, the inverse of [`Self::split_heads`].
    fn merge_heads(&self, x: Tensor<4>) -> Tensor<3> {
        let [b, h, n, d] = x.dims();
        x.swap_dims(1, 2).reshape([b, n, h * d])
    }

    /// `sigmoid(β)` as `[1, H, 1, 1]`, or `None` without memory.
    pub fn gate(&self) -> Option<Tensor<4>> {
        self.beta.as_ref().map(|b| sigmoid(b.val()).reshape([1, self.n_heads, 1, 1]))
    }

    /// Attends over one whole segment `x: [B, N, d_model]`, reading `memory` (that of segments
    /// before this one) and returning the output and the memory updated with this segment.
    /// `memory` must be `Some` exactly when the layer carries state between segments.
    pub fn forward(&self, x: Tensor<3>, rope: &Rope, memory: Option<LayerMemory>) -> (Tensor<3>, Option<LayerMemory>) {
        let (out, memory, _) = self.forward_chunk(x, rope, memory, None, true);
        (out, memory)
    }

    /// Attends over a chunk of a segment: `x` holds the tokens after the `cache`d ones (the
    /// segment's earlier tokens, if any). With `complete`, the chunk ends the segment: the memory
    /// is updated with the whole segment and no cache is returned; otherwise the memory is
    /// returned unchanged with the cache extended by the chunk. A whole segment in one chunk is
    /// [`Self::forward`]; token-by-token chunks give the same outputs (used for generation).
    pub fn forward_chunk(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        memory: Option<LayerMemory>,
        cache: Option<KvCache>,
        complete: bool,
    ) -> (Tensor<3>, Option<LayerMemory>, Option<KvCache>) {
        let c = self.compute;
        let q = self.split_heads(linear(&self.wq, x.clone(), c), self.n_heads);
        let k = self.split_heads(linear(&self.wk, x.clone(), c), self.n_kv_heads);
        let v = self.split_heads(linear(&self.wv, x, c), self.n_kv_heads);
        let [b, h, t, _] = q.dims();
        let start = cache.as_ref().map_or(0, |c| c.v.dims()[2]);
        // Transformer-XL: the previous segment's keys sit at positions 0..P before this one.
        let previous = match &memory {
            Some(LayerMemory::Xl(x)) => Some(x),
            _ => None,
        };
        let offset = previous.map_or(0, |x| x.k.dims()[2]);
        let q_rope = rope.apply(q.clone(), offset + start);
        let k_rope = rope.apply(k.clone(), offset + start);
        let (k, k_rope, v) = match cache {
            None => (k, k_rope, v),
            Some(c) => (Tensor::cat(vec![c.k, k], 2), Tensor::cat(vec![c.k_rope, k_rope], 2), Tensor::cat(vec![c.v, v], 2)),
        };
        // Keep the segment's keys and values only if it goes on; otherwise every tensor below is
        // used by value, so that no extra reference blocks Burn's in-place operations.
        let cache = (!complete).then(|| KvCache { k: k.clone(), k_rope: k_rope.clone(), v: v.clone() });
        let local = match previous {
            None if start == 0 => crate::host::causal_attention(q_rope, self.repeat_kv(k_rope), self.repeat_kv(v.clone()), c, |q, k, v| {
                let causal = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
                scaled_attention(q, k, v, None, causal, c)
            }),
            _ => {
                let (keys, values) = match previous {
                    Some(x) => (
                        Tensor::cat(vec![rope.apply(x.k.clone(), 0), k_rope], 2),
                        Tensor::cat(vec![x.v.clone(), v.clone()], 2),
                    ),
                    None => (k_rope, v.clone()),
                };
                let mask = attention_mask([b, h, t], offset, start, previous.map(|x| x.valid.as_slice()), &q_rope.device());
                let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
                scaled_attention(q_rope, self.repeat_kv(keys), self.repeat_kv(values), Some(mask), options, c)
            }
        };

        let (mixed, memory) = match (self.gate(), memory) {
            (Some(g), Some(LayerMemory::Compressive(memory))) => {
                let retrieved = memory.retrieve(sigma(q));
                let memory = if complete {
                    let sigma_k = sigma(k);
                    match self.update {
                        MemoryKind::Linear => memory.update_linear(sigma_k, v),
                        MemoryKind::Delta => memory.update_delta(sigma_k, v),
                        _ => unreachable!("only linear and delta layers have a gate"),
                    }
                } else {
                    memory
                };
                let mixed = retrieved * g.clone() + local * (g.neg() + 1.0);
                (mixed, Some(LayerMemory::Compressive(memory)))
            }
            (None, Some(LayerMemory::Xl(previous))) => {
                // The cache is kept without gradient, as in Transformer-XL.
                let next = if complete {
                    XlCache { k: k.detach(), v: v.detach(), valid: vec![true; b] }
                } else {
                    previous
                };
                (local, Some(LayerMemory::Xl(next)))
            }
            (None, None) => (local, None),
            (gate, memory) => panic!(
                "memory mismatch: layer has a gate = {}, caller passed memory = {}",
                gate.is_some(),
                memory.is_some()
            ),
        };
        (linear(&self.wo, self.merge_heads(mixed), c), memory, cache)
    }
}

/// Mask (true = hidden) of `t` queries at positions `offset + start ..` over `offset` previous
/// keys (hidden for streams with `valid[b] == false`) and `start + t` keys of this segment
/// (causal), shaped `[B, H, t, offset + start + t]`.
fn attention_mask(
    [b, h, t]: [usize; 3],
    offset: usize,
    start: usize,
    valid: Option<&[bool]>,
    device: &Device,
) -> Tensor<4, Bool> {
    let keys = offset + start + t;
    let rows = Tensor::<1, Int>::arange((offset + start) as i64..keys as i64, device).reshape([t, 1]);
    let cols = Tensor::<1, Int>::arange(0..keys as i64, device).reshape([1, keys]);
    let mut mask = cols.clone().greater(rows).reshape([1, 1, t, keys]).expand([b, 1, t, keys]);
    if let Some(valid) = valid.filter(|v| v.iter().any(|&ok| !ok)) {
        let invalid: Vec<bool> = valid.iter().map(|&ok| !ok).collect();
        let invalid = Tensor::<1, Bool>::from_data(TensorData::new(invalid, [b]), device).reshape([b, 1, 1, 1]).expand([b, 1, t, keys]);
        let previous = cols.lower_elem(offset as i64).reshape([1, 1, 1, keys]).expand([b, 1, t, keys]);
        mask = mask.bool_or(invalid.bool_and(previous));
    }
    mask.expand([b, h, t, keys])
}

/// Keys and values of the tokens seen so far in the current, unfinished segment.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// Keys before RoPE `[B, kv_heads, t, d_k]` (what the memory stores).
    pub k: Tensor<4>,
    /// Keys after RoPE (what local attention reads).
    pub k_rope: Tensor<4>,
    /// Values `[B, kv_heads, t, d_v]`.
    pub v: Tensor<4>,
}
