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

/// Gates of `model`, and memory sizes after reading `document` (whole segments) if given.
pub fn inspect(model: &InfiniLm, config: &ModelConfig, document: Option<&[u32]>, device: &Device) -> Inspection {
    let gates = model
        .blocks
        .iter()
        .filter_map(|b| b.attn.beta.as_ref().map(|beta| per_head(sigmoid(beta.val()).reshape([1, config.n_heads]))))
        .collect();
    let mut report = Inspection { gates, tokens_read: 0, memory_norm: Vec::new(), z_norm: Vec::new() };
    let Some(doc) = document else { return report };
    let mut memory = MemoryState::empty(config, 1, device);
    for chunk in doc.chunks(config.segment_len) {
        let ids: Vec<i64> = chunk.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, chunk.len()]), device);
        let (_, next) = model.forward(tokens, memory, &[]);
        memory = next;
        report.tokens_read += chunk.len();
    }
    let h = config.n_heads;
    for layer in memory.layers.iter().filter_map(|l| l.compressive()) {
        let m = layer.m.clone().powi_scalar(2).sum_dims(&[2, 3]).sqrt().reshape([1, h]);
        report.memory_norm.push(per_head(m));
        report.z_norm.push(per_head(layer.z.clone().abs().sum_dim(2).reshape([1, h])));
    }
    report
}
