//! The per-segment step shared by training, validation and evaluation: a [`SegmentBatch`]
//! through the model with the memory, giving the masked next-token NLL of every position.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use infini_data::SegmentBatch;
use infini_model::host::fused;
use infini_model::host::head::HostHead;
use infini_model::{InfiniLm, MemoryState};

/// Token ids `[B, N]` of a flat row-major buffer.
pub fn ids(values: &[u32], batch: usize, len: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = values.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [batch, len]), device)
}

/// The tensor-op loss over the vocabulary: `log softmax` of `logits: [T, V]` and each row's
/// `−log p(target)` for `targets: [T, 1]`, as `[T, 1]`.
fn log_probs(logits: Tensor<2>, targets: Tensor<2, Int>) -> (Tensor<2>, Tensor<2>) {
    let logp = log_softmax(logits, 1);
    let nll = logp.clone().gather(1, targets).neg();
    (logp, nll)
}

/// `-log p(target)` at every position of `logits: [B, N, V]`, times `mask: [B, N]`.
pub fn masked_nll(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
    let [b, n, v] = logits.dims();
    let (_, nll) = log_probs(logits.reshape([b * n, v]), targets.reshape([b * n, 1]));
    nll.reshape([b, n]) * mask
}

/// Runs one segment for every stream (emptying the memory of streams that start a document)
/// and returns the per-position masked NLL `[B, N]` and the updated memory. With `head` (a
/// [`HostHead`] of `model`, Flex in f32) the logits and the loss run on the host; otherwise,
/// without autodiff on Flex the loss over the vocabulary runs fused on the host
/// ([`infini_model::host::vocab_nll::nll`]), and elsewhere as tensor ops.
pub fn segment_nll(model: &InfiniLm, segment: &SegmentBatch, memory: MemoryState, device: &Device, head: Option<&HostHead>) -> (Tensor<2>, MemoryState) {
    let (b, n) = (segment.batch, segment.segment_len);
    let inputs = ids(&segment.inputs, b, n, device);
    let mask = Tensor::<2>::from_data(TensorData::new(segment.mask.clone(), [b, n]), device);
    let host_nll = |nll: Vec<f32>| Tensor::<2>::from_data(TensorData::new(nll, [b, n]), device) * mask.clone();
    if let Some(head) = head {
        let (hidden, memory) = model.forward_embedded(model.embed(inputs), memory, &segment.reset);
        let h = hidden.reshape([b * n, head.d_model()]).into_data();
        let mut logits = head.logits(h.as_slice::<f32>().expect("hidden states are f32"));
        return (host_nll(infini_model::host::vocab_nll::nll(&mut logits, head.vocab(), &segment.targets)), memory);
    }
    let (logits, memory) = model.forward(inputs, memory, &segment.reset);
    if fused(device) && !device.is_autodiff() {
        let vocab = logits.dims()[2];
        let mut data = logits.into_data().try_into_vec::<f32>().expect("logits are f32");
        return (host_nll(infini_model::host::vocab_nll::nll(&mut data, vocab, &segment.targets)), memory);
    }
    let targets = ids(&segment.targets, b, n, device);
    (masked_nll(logits, targets, mask), memory)
}

/// The output head and loss of one training segment, with their gradient worked out directly
/// instead of through autodiff: `∂(scale·Σ mask·NLL)/∂logits = scale·mask·(softmax − onehot)`,
/// from which follow the gradients of the hidden states (`g·Wᵀ`) and of the head (`hᵀ·g`,
/// added into a [`HeadGradSum`]). The `[tokens, vocab]` logits then live only for the duration
/// of this call — autodiff would keep them, their exponentials and their gradients until the
/// backward pass, and take about twice the passes over them.
pub struct HeadGrad {
    /// Σ mask·NLL of the segment (detached, not scaled).
    pub nll_sum: Tensor<1>,
    /// A scalar whose gradient with respect to the hidden states (the only tracked input) is
    /// `scale ·` that of the segment's summed NLL; its value means nothing.
    pub hidden_term: Tensor<1>,
}

/// The sum of `scale · ∂(Σ mask·NLL)/∂W` over the segments of a training step, for the
/// `[d_model, vocab]` head ([`InfiniLm::head_weight`]), and the way the head is computed: on
/// Flex in f32 its three products run on the host ([`HostHead`]: no copies of the logits, the
/// gradient summed inside the product); on Flex with low-precision products the loss over the
/// vocabulary is fused on the host and the products are tensor ops; elsewhere all tensor ops.
pub struct HeadGradSum {
    path: HeadPath,
}

enum HeadPath {
    Host { head: HostHead, sum: Vec<f32>, added: bool },
    Tensors { fused: bool, sum: Option<Tensor<2>> },
}

impl HeadGradSum {
    /// An empty sum for `model` on `device`, on the fastest path that applies.
    pub fn new(model: &InfiniLm, device: &Device) -> Self {
        Self::with_fused(model, device, fused(device))
    }

    /// [`Self::new`], with the host paths (`fused`, Flex only) or tensor ops (any backend).
    pub fn with_fused(model: &InfiniLm, device: &Device, fused: bool) -> Self {
        let host = if fused { HostHead::of(model, device) } else { None };
        let path = match host {
            Some(head) => {
                let sum = vec![0.0; head.d_model() * head.vocab()];
                HeadPath::Host { head, sum, added: false }
            }
            None => HeadPath::Tensors { fused, sum: None },
        };
        Self { path }
    }

    /// The summed gradient `[d_model, vocab]`, or `None` if no segment was added.
    pub fn into_tensor(self, device: &Device) -> Option<Tensor<2>> {
        match self.path {
            HeadPath::Host { head, sum, added } => {
                added.then(|| Tensor::from_data(TensorData::new(sum, [head.d_model(), head.vocab()]), device))
            }
            HeadPath::Tensors { sum, .. } => sum,
        }
    }
}

/// See [`HeadGrad`]: `hidden: [B, N, d_model]` are the final hidden states of `segment`; the
/// head's gradient is added into `sum`.
pub fn head_grad(model: &InfiniLm, hidden: Tensor<3>, segment: &SegmentBatch, scale: f64, device: &Device, sum: &mut HeadGradSum) -> HeadGrad {
    use burn::tensor::IndexingUpdateOp;
    use infini_model::precision::matmul;
    let [b, n, d] = hidden.dims();
    let t = b * n;
    let h = hidden.clone().detach().reshape([t, d]);
    let weights = || segment.mask.iter().map(|&m| m * scale as f32).collect::<Vec<f32>>();
    let masked_sum = |nll: &[f32]| -> Tensor<1> {
        let sum: f64 = nll.iter().zip(&segment.mask).map(|(&l, &m)| l as f64 * m as f64).sum();
        Tensor::from_data(TensorData::new(vec![sum as f32], [1]), device)
    };
    let (nll_sum, grad_hidden) = match &mut sum.path {
        HeadPath::Host { head, sum, added } => {
            let h = h.into_data();
            let h = h.as_slice::<f32>().expect("hidden states are f32");
            let mut g = head.logits(h);
            let nll = infini_model::host::vocab_nll::nll_and_grad(&mut g, head.vocab(), &segment.targets, &weights());
            head.add_grad_weight(sum, h, &g);
            *added = true;
            let grad_hidden = Tensor::<2>::from_data(TensorData::new(head.grad_hidden(&g), [t, d]), device);
            (masked_sum(&nll), grad_hidden)
        }
        HeadPath::Tensors { fused, sum } => {
            let compute = model.compute();
            // Untracked: `detach` keeps a parameter's require-grad flag, and a tracked weight
            // would make the gradient below a graph node, which the optimizer cannot take.
            let w = model.head_weight().detach().set_require_grad(false);
            let logits = matmul(h.clone(), w.clone(), compute);
            let (nll_sum, grad_logits) = if *fused {
                let vocab = w.dims()[1];
                let mut data = logits.into_data().try_into_vec::<f32>().expect("logits are f32");
                let nll = infini_model::host::vocab_nll::nll_and_grad(&mut data, vocab, &segment.targets, &weights());
                (masked_sum(&nll), Tensor::<2>::from_data(TensorData::new(data, [t, vocab]), device))
            } else {
                let targets = ids(&segment.targets, t, 1, device);
                let mask = Tensor::<2>::from_data(TensorData::new(segment.mask.clone(), [t, 1]), device);
                let (logp, nll) = log_probs(logits, targets.clone());
                let nll_sum = (nll * mask.clone()).sum();
                let weight = mask.mul_scalar(scale);
                (nll_sum, (logp.exp() * weight.clone()).scatter(1, targets, weight.neg(), IndexingUpdateOp::Add))
            };
            let grad_hidden = matmul(grad_logits.clone(), w.transpose(), compute);
            let grad_weight = matmul(h.transpose(), grad_logits, compute);
            *sum = Some(match sum.take() {
                Some(total) => total + grad_weight,
                None => grad_weight,
            });
            (nll_sum, grad_hidden)
        }
    };
    HeadGrad { nll_sum, hidden_term: (hidden.reshape([t, d]) * grad_hidden).sum() }
}
