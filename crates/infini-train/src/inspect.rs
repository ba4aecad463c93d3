//! What a trained model does with its memory: the gate sigmoid(β) of every head, and the size
//! of every head's memory after reading a document.

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_model::{InfiniLm, MemoryState, ModelConfig};
use serde::Serialize;

/// Per layer and head: the gate, and (after a document) the memory's size.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// sigmoid(β) per layer, per head: near 1 the head reads memory, near 0 local attention.
    pub gates: Vec<Vec<f64>>,
    /// Tokens of the document read before measuring the memory (0 = none read).
    pub tokens_read: usize,
    /// ‖M‖_F per layer, per head, after the document.
    pub memory_norm: Vec<Vec<f64>>,
    /// ‖z‖₁ per layer, per head (the summed key mass written).
    pub z_norm: Vec<Vec<f64>>,
}

fn per_head(t: Tensor<2>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64")
}

/// Gates of `model`, and memory sizes after reading the whole segments of `document` if given.
pub fn inspect(model: &InfiniLm, config: &ModelConfig, document: Option<&[u32]>, device: &Device) -> Inspection {
    let gates = model
        .blocks
        .iter()
        .filter_map(|b| b.attn.beta.as_ref().map(|beta| per_head(sigmoid(beta.val()).reshape([1, config.n_heads]))))
        .collect();
    let mut report = Inspection { gates, tokens_read: 0, memory_norm: Vec::new(), z_norm: Vec::new() };
    let Some(doc) = document else { return report };
    let segments = crate::eval::document_segments(doc, config.segment_len);
    let memory = crate::eval::read_segments(model, MemoryState::empty(config, 1, device), segments, device, |s, _| {
        report.tokens_read += s.segment_len;
    });
    let h = config.kv_heads();
    for layer in memory.layers.iter().filter_map(|l| l.compressive()) {
        let m = layer.m.clone().powi_scalar(2).sum_dims(&[2, 3]).sqrt().reshape([1, h]);
        report.memory_norm.push(per_head(m));
        report.z_norm.push(per_head(layer.z.clone().abs().sum_dim(2).reshape([1, h])));
    }
    report
}

/// Where the memory's read goes, for one prompt: per layer and head, the retrieval weight
/// `σ(q)·σ(k_t)` that the prompt's last token puts on the tokens `focus` (e.g. a passkey
/// sentence) against all the tokens the memory holds (every segment before the last one).
#[derive(Debug, Serialize)]
pub struct RetrievalShare {
    /// Tokens held in memory when the last token reads it.
    pub memory_tokens: usize,
    /// Of them, tokens in `focus`.
    pub focus_tokens: usize,
    /// Per layer, per head: Σ_focus σ(q)·σ(k_t) / Σ_all σ(q)·σ(k_t), the focus's share of the
    /// normaliser σ(q)·z (the fraction of the read that comes from the focus).
    pub share: Vec<Vec<f64>>,
    /// Per layer, per head: the mean weight of a focus token over that of any other token
    /// held (1 = the read does not tell them apart).
    pub ratio: Vec<Vec<f64>>,
    /// Per layer: what the last token reads, σ(q)M / σ(q)z before the gate, `[heads · d_v]`
    /// (head-major).
    pub read: Vec<Vec<f64>>,
}

impl RetrievalShare {
    /// Per layer, per head: ‖σ(q)M / σ(q)z‖₂, the size of the read.
    pub fn read_norm(&self, heads: usize) -> Vec<Vec<f64>> {
        self.read
            .iter()
            .map(|read| read.chunks(read.len() / heads).map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt()).collect())
            .collect()
    }
}

/// Per layer and head, ‖a − b‖ / ‖a‖ of two reads (`read` of two [`RetrievalShare`]s of `heads`
/// heads): how much of the question's read changes between two prompts, e.g. two that differ
/// only in the key's digits (the part of the read that carries the key, whatever the update rule).
pub fn read_change(a: &RetrievalShare, b: &RetrievalShare, heads: usize) -> Vec<Vec<f64>> {
    a.read
        .iter()
        .zip(&b.read)
        .map(|(a, b)| {
            let dv = a.len() / heads;
            a.chunks(dv)
                .zip(b.chunks(dv))
                .map(|(a, b)| {
                    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
                    let size: f64 = a.iter().map(|x| x * x).sum();
                    (diff / size.max(1e-300)).sqrt()
                })
                .collect()
        })
        .collect()
}

/// See [`RetrievalShare`]; `prompt` is read whole segments at a time (Infini-attention only).
pub fn retrieval_share(model: &InfiniLm, config: &ModelConfig, prompt: &[u32], focus: std::ops::Range<usize>, device: &Device) -> RetrievalShare {
    let (n, h, kv, dk) = (config.segment_len, config.n_heads, config.kv_heads(), config.head_dim());
    // Per query head, the σ(K) sums of its key/value head (grouped-query attention).
    let per_query_head = |s: Tensor<2>| s.reshape([kv, 1, dk]).expand([kv, h / kv, dk]).reshape([h, dk]);
    let last_start = (prompt.len() - 1) / n * n;
    let zeros = || Tensor::<2>::zeros([h, dk], device);
    let mut focus_sum: Vec<Tensor<2>> = (0..config.n_layers).map(|_| zeros()).collect();
    let mut total_sum: Vec<Tensor<2>> = (0..config.n_layers).map(|_| zeros()).collect();
    let mut memory = MemoryState::empty(config, 1, device);
    let mut share = Vec::new();
    let mut ratio = Vec::new();
    let mut reads = Vec::new();
    let memory_tokens = last_start;
    let focus_tokens = focus.start.min(last_start)..focus.end.min(last_start);
    for start in (0..prompt.len()).step_by(n) {
        let chunk = &prompt[start..(start + n).min(prompt.len())];
        let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, chunk.len()]), device);
        let before = (start == last_start).then(|| memory.clone());
        let (inputs, next) = model.attention_inputs(tokens, memory);
        memory = next;
        for (layer, x) in inputs.into_iter().enumerate() {
            let attn = &model.blocks[layer].attn;
            let t = chunk.len();
            if start < last_start {
                // σ(K) of this segment, [H, t, d_k]: what the memory's normaliser z sums.
                let k = infini_model::sigma(attn.wk.forward(x).reshape([t, kv, dk]).swap_dims(0, 1));
                total_sum[layer] = total_sum[layer].clone() + per_query_head(k.clone().sum_dim(1).reshape([kv, dk]));
                let (a, b) = (focus.start.clamp(start, start + t), focus.end.clamp(start, start + t));
                if a < b {
                    let part = per_query_head(k.slice([0..kv, a - start..b - start, 0..dk]).sum_dim(1).reshape([kv, dk]));
                    focus_sum[layer] = focus_sum[layer].clone() + part;
                }
            } else {
                let q = infini_model::sigma(attn.wq.forward(x).slice([0..1, t - 1..t]).reshape([h, dk]));
                let weight = |s: Tensor<2>| per_head((q.clone() * s).sum_dim(1).reshape([1, h]));
                let (f, all) = (weight(focus_sum[layer].clone()), weight(total_sum[layer].clone()));
                let read_from = before.as_ref().and_then(|m| m.layers[layer].compressive()).expect("the last segment reads a compressive memory");
                let read = read_from.retrieve(q.clone().reshape([1, h, 1, dk]));
                let dv = read.dims()[3];
                reads.push(per_head(read.reshape([1, h * dv])));
                let held = focus_tokens.len() as f64;
                let other = (memory_tokens as f64 - held).max(1.0);
                share.push(f.iter().zip(&all).map(|(f, a)| f / a.max(1e-30)).collect());
                ratio.push(
                    f.iter().zip(&all).map(|(f, a)| (f / held.max(1.0)) / ((a - f).max(1e-30) / other)).collect(),
                );
            }
        }
    }
    RetrievalShare { memory_tokens, focus_tokens: focus_tokens.len(), share, ratio, read: reads }
}
