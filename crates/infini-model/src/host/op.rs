//! Host operations with a hand-written gradient, registered in Burn's autodiff graph on Flex.
//!
//! Burn differentiates an operation made of tensor ops by differentiating each op, and on Flex
//! each op is a single-threaded pass over memory with an output of its own. A host operation here
//! is one threaded pass forward ([`apply`]'s `forward`) and one backward (`grad`), whatever the
//! formula: the autodiff graph gets one node for it, with the gradient written out by hand. The
//! callers keep the tensor-op formulation beside it (used on every other backend), and the tests
//! compare both, values and gradients.

use std::fmt::Debug;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, DispatchAutodiffContext, DispatchKindConversion, DispatchTensor, Flex, GradientCheckpointingStrategy};
use burn::tensor::{Bytes, DType, Shape, Tensor};

/// The inputs' gradients from the saved state and the output's gradient; `needs[i]` says whether
/// input `i` wants one (`None` where it does not).
pub type GradFn<S, const N: usize> = fn(&S, &[f32], [bool; N]) -> [Option<Vec<f32>>; N];

/// The values of `t` (f32) in row-major order, copied only if its layout is not contiguous.
pub fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous f32").to_vec()),
    }
}

/// A contiguous f32 Flex tensor holding `data`.
pub fn flex_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    assert_eq!(data.len(), shape.num_elements(), "host op: {} values for shape {shape:?}", data.len());
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), DType::F32)
}

/// The backward step of a host operation.
#[derive(Debug)]
struct HostBackward<S, const N: usize> {
    grad: GradFn<S, N>,
    shapes: [Shape; N],
}

impl<S: Clone + Send + Debug + 'static, const N: usize> Backward<Flex, N> for HostBackward<S, N> {
    type State = S;

    fn backward(self, ops: Ops<S, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let g = grads.consume::<Flex>(&ops.node);
        let needs = ops.parents.each_ref().map(Option::is_some);
        let input_grads = (self.grad)(&ops.state, &values(&g), needs);
        drop(g);
        for ((parent, grad), shape) in ops.parents.into_iter().zip(input_grads).zip(self.shapes) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, flex_tensor(grad, shape));
            }
        }
    }
}

/// `forward(inputs, tracked)` as one node of the autodiff graph whose gradient is `grad`, for f32
/// tensors on Flex (with or without autodiff): `forward` returns the output (see [`flex_tensor`])
/// and the state `grad` reads (only needed when `tracked`). `None` if the tensors are not f32
/// Flex tensors sharing one autodiff context; the caller then runs its tensor-op formulation.
pub fn apply<const D: usize, const N: usize, S: Clone + Send + Debug + 'static>(
    inputs: [Tensor<D>; N],
    forward: impl FnOnce(&[FlexTensor; N], bool) -> (FlexTensor, Option<S>),
    grad: GradFn<S, N>,
) -> Option<Tensor<D>> {
    if inputs.iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let dispatch = inputs.map(Tensor::into_dispatch);
    let context = dispatch[0].autodiff;
    if dispatch.iter().any(|t| t.autodiff != context) {
        return None;
    }
    match context {
        DispatchAutodiffContext::Disabled => {
            let flex = dispatch.map(|t| <DispatchTensor as DispatchKindConversion<Flex>>::try_into_backend(t).ok().map(|b| b.float()));
            if flex.iter().any(Option::is_none) {
                return None;
            }
            let flex = flex.map(Option::unwrap);
            Some(Tensor::from_primitive::<Flex>(forward(&flex, false).0))
        }
        DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Disabled) => {
            tracked::<D, N, S, NoCheckpointing>(dispatch, forward, grad)
        }
        DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Balanced) => {
            tracked::<D, N, S, BalancedCheckpointing>(dispatch, forward, grad)
        }
    }
}

fn tracked<const D: usize, const N: usize, S: Clone + Send + Debug + 'static, C: CheckpointStrategy>(
    dispatch: [DispatchTensor; N],
    forward: impl FnOnce(&[FlexTensor; N], bool) -> (FlexTensor, Option<S>),
    grad: GradFn<S, N>,
) -> Option<Tensor<D>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let ad = dispatch.map(|t| <DispatchTensor as DispatchKindConversion<Autodiff<Flex, C>>>::try_into_backend(t).ok().map(|b| b.float()));
    if ad.iter().any(Option::is_none) {
        return None;
    }
    let ad = ad.map(Option::unwrap);
    let nodes = ad.each_ref().map(|t| t.node());
    let flex = ad.each_ref().map(|t| t.primitive().clone());
    let shapes = flex.each_ref().map(|t| t.layout().shape().clone());
    let step = HostBackward { grad, shapes };
    let out = match step.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward(&flex, true);
            prep.finish(state.expect("a tracked host op returns its state"), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&flex, false).0),
    };
    drop(ad);
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    /// A host operation's gradient is the same under Burn's gradient checkpointing as without
    /// it, and it runs on a device without autodiff.
    #[test]
    fn every_autodiff_context_is_served() {
        let data = Tensor::<2>::random([7, 33], Distribution::Normal(0.0, 2.0), &Device::flex()).into_data();
        let grad_of = |device: Device| {
            let x = Tensor::<2>::from_data(data.clone(), &device).require_grad();
            let y = crate::host::elementwise(x.clone(), crate::host::silu);
            let grads = (y.clone() * y).sum().backward();
            x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap()
        };
        let plain = grad_of(Device::flex().autodiff());
        assert!(plain.iter().any(|g| *g != 0.0));
        assert_eq!(plain, grad_of(Device::flex().autodiff().gradient_checkpointing()));
        let x = Tensor::<2>::random([3, 5], Distribution::Default, &Device::flex());
        let y = crate::host::elementwise(x.clone(), crate::host::silu);
        assert_eq!(y.dims(), [3, 5]);
    }
}
