//! Optimizers (Burn's AdamW and Adafactor) with three parameter groups, the learning-rate
//! schedule, and global gradient-norm clipping.
//!
//! Groups: weights (decayed), norm gains (no decay), and the gates β (no decay, their own
//! learning rate: `lr × gate_lr_multiplier`), so that a gate is never stuck at its init.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdafactorConfig, AdamWConfig, GradientsParams, LearningRate, ModuleOptimizer, Optimizer};
use burn::optim::{AdamWState, AdaptiveMomentumState};
use burn::tensor::{Device, Tensor, TensorData};

use infini_model::host::adamw::AdamWStep;

use crate::config::{OptimizerKind, TrainConfig};

/// Path fragment of the gate parameters (`blocks.N.attn.beta`).
pub const GATE_PATH: &str = "beta";
/// Path fragment of the RMS norm gains.
pub const NORM_PATH: &str = "gamma";

/// Any optimizer, with its learning rate multiplied by a constant.
#[derive(Clone)]
pub struct ScaledLr<O> {
    inner: O,
    scale: f64,
}

impl<O: Optimizer> Optimizer for ScaledLr<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        self.inner.step(lr * self.scale, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// Burn's AdamW, with the update done in one threaded pass on the host for Flex tensors (Burn's
/// takes about fifteen single-threaded whole-tensor passes). Same state type, hence the same
/// checkpoints, and the same arithmetic in the same order.
#[derive(Clone)]
pub struct AdamW {
    inner: burn::optim::AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        if !infini_model::host::fused(&device) || tensor.dtype() != burn::tensor::DType::F32 {
            return self.inner.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        // The values are updated in the data read back, which then becomes the tensor again: no
        // copies where Flex holds the only reference (turning the data into Vecs would copy each,
        // its alignment being Flex's 16 bytes, not f32's 4).
        let zeros = || TensorData::new(vec![0f32; shape.num_elements()], shape.clone());
        let (mut w, g) = (tensor.into_data(), grad.into_data());
        let (time, mut m, mut v) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1.into_data(), s.momentum.moment_2.into_data()),
            None => (1, zeros(), zeros()),
        };
        let step = AdamWStep { lr, beta_1: self.beta_1, beta_2: self.beta_2, epsilon: self.epsilon, weight_decay: self.weight_decay, time };
        let f32s = "AdamW state and weights are f32";
        infini_model::host::adamw::update(
            w.as_mut_slice::<f32>().expect(f32s),
            m.as_mut_slice::<f32>().expect(f32s),
            v.as_mut_slice::<f32>().expect(f32s),
            g.as_slice::<f32>().expect(f32s),
            step,
        );
        let tensor = |data: TensorData| Tensor::<D>::from_data(data, &device);
        let momentum = AdaptiveMomentumState { time, moment_1: tensor(m), moment_2: tensor(v), max_moment_2: None };
        (tensor(w), Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::AdamW::to_device(state, device)
    }
}

fn adamw(t: &TrainConfig, weight_decay: f64) -> AdamW {
    let inner = AdamWConfig::new()
        .with_beta_1(t.beta1 as f32)
        .with_beta_2(t.beta2 as f32)
        .with_epsilon(t.eps as f32)
        .with_weight_decay(weight_decay as f32)
        .build();
    AdamW { inner, beta_1: t.beta1 as f32, beta_2: t.beta2 as f32, epsilon: t.eps as f32, weight_decay: weight_decay as f32 }
}

fn adafactor(weight_decay: f64) -> burn::optim::Adafactor {
    // The schedule supplies the learning rate (the paper: 0.01, warm-up, cosine), so Adafactor's
    // own relative step size and parameter scaling are off.
    AdafactorConfig::new()
        .with_relative_step(false)
        .with_scale_parameter(false)
        .with_weight_decay(weight_decay as f32)
        .build()
}

/// The whole-model optimizer of `t.optimizer`, with the three groups described above.
pub fn build(t: &TrainConfig) -> ModuleOptimizer {
    let gates = ParamGroup::from_predicate(GATE_PATH);
    let norms = ParamGroup::from_predicate(NORM_PATH);
    match t.optimizer {
        OptimizerKind::Adamw => ModuleOptimizer::from(adamw(t, t.weight_decay))
            .with_group(norms, adamw(t, 0.0), None)
            .with_group(gates, ScaledLr { inner: adamw(t, 0.0), scale: t.gate_lr_multiplier }, None),
        OptimizerKind::Adafactor => ModuleOptimizer::from(adafactor(t.weight_decay))
            .with_group(norms, adafactor(0.0), None)
            .with_group(gates, ScaledLr { inner: adafactor(0.0), scale: t.gate_lr_multiplier }, None),
    }
}

/// Linear warm-up to `lr` over `warmup_steps`, then cosine decay to `lr · min_lr_ratio` at `steps`.
/// `step` counts from 0 (the first update).
pub fn learning_rate(t: &TrainConfig, step: u64) -> f64 {
    if step < t.warmup_steps {
        return t.lr * (step + 1) as f64 / t.warmup_steps as f64;
    }
    let span = t.steps.saturating_sub(t.warmup_steps).max(1) as f64;
    let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
    let floor = t.lr * t.min_lr_ratio;
    floor + (t.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Parameter ids of a module with their ranks.
struct ParamIds(Vec<(ParamId, usize)>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, D));
    }
}

fn sum_squares<const D: usize>(grads: &GradientsParams, id: ParamId) -> Option<Tensor<1>> {
    grads.get::<D>(id).map(|g| g.powi_scalar(2).sum())
}

fn scale<const D: usize>(grads: &mut GradientsParams, id: ParamId, factor: f64) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register(id, g.mul_scalar(factor));
    }
}

macro_rules! by_rank {
    ($rank:expr, $f:ident($($arg:expr),*)) => {
        match $rank {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            r => panic!("parameter of rank {r}"),
        }
    };
}

fn merge<const D: usize>(from: &mut burn::optim::MultiGradientsParams, into: &mut GradientsParams, id: ParamId, device: &Device) {
    if let Some((g, _)) = from.remove::<D>(id) {
        into.register(id, g.to_device(device));
    }
}

/// Sums the gradients computed on several devices (Burn's [`burn::optim::MultiGradientsParams`])
/// into one set on `device`, for clipping and the optimizer step.
pub fn sum_device_grads<M: Module>(model: &M, grads: Vec<(GradientsParams, Device)>, device: &Device) -> GradientsParams {
    let mut multi = burn::optim::MultiGradientsParams { grads };
    let mut ids = ParamIds(Vec::new());
    model.visit(&mut ids);
    let mut out = GradientsParams::new();
    for &(id, rank) in &ids.0 {
        by_rank!(rank, merge(&mut multi, &mut out, id, device));
    }
    out
}

fn values<const D: usize>(grads: &GradientsParams, id: ParamId) -> Option<Vec<f32>> {
    grads.get::<D>(id).map(|g| g.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 gradient"))
}

/// Every parameter's gradient as a flat vector, in the model's parameter order (`None` for a
/// parameter without one): for comparing gradients in tests and tools.
pub fn gradient_values<M: Module>(model: &M, grads: &GradientsParams) -> Vec<Option<Vec<f32>>> {
    let mut ids = ParamIds(Vec::new());
    model.visit(&mut ids);
    ids.0.iter().map(|&(id, rank)| by_rank!(rank, values(grads, id))).collect()
}

/// The global L2 norm of all gradients; if `max_norm > 0` and the norm exceeds it, every
/// gradient is scaled by `max_norm / norm`. Returns the norm before clipping (NaN/inf when a
/// gradient is not finite, in which case nothing is scaled).
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    clip_global_norm_reading(model, grads, max_norm, &[]).0
}

/// [`clip_global_norm`], reading the values of `also` (one scalar each, still on the device)
/// back in the same transfer as the norm: one device round trip for the whole step.
pub fn clip_global_norm_reading<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64, also: &[Tensor<1>]) -> (f64, Vec<f64>) {
    let mut ids = ParamIds(Vec::new());
    model.visit(&mut ids);
    let squares: Vec<Tensor<1>> = ids.0.iter().filter_map(|&(id, rank)| by_rank!(rank, sum_squares(grads, id))).collect();
    let device = also.first().map(|t| t.device()).or_else(|| squares.first().map(|t| t.device()));
    let Some(device) = device else { return (0.0, Vec::new()) };
    let total = if squares.is_empty() { Tensor::<1>::zeros([1], &device) } else { Tensor::cat(squares, 0).sum() };
    let mut read = vec![total];
    read.extend(also.iter().cloned());
    let values: Vec<f64> = Tensor::cat(read, 0).into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 values");
    let norm = values[0].sqrt();
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for &(id, rank) in &ids.0 {
            by_rank!(rank, scale(grads, id, factor));
        }
    }
    (norm, values[1..].to_vec())
}

#[cfg(test)]
mod adamw_tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The host AdamW follows Burn's step for step (decay, bias correction, state carried).
    #[test]
    fn host_adamw_equals_burns() {
        let device = Device::flex();
        let t = TrainConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, ..TrainConfig::default() };
        let ours = adamw(&t, 0.1);
        let theirs = ours.inner.clone();
        let mut a = Tensor::<2>::random([37, 53], Distribution::Default, &device);
        let mut b = a.clone();
        let (mut sa, mut sb) = (None, None);
        for step in 0..4 {
            let grad = Tensor::<2>::random([37, 53], Distribution::Normal(0.0, 1.0 + step as f64), &device);
            (a, sa) = ours.step(1e-2, a, grad.clone(), sa);
            (b, sb) = theirs.step(1e-2, b, grad, sb);
        }
        let (x, y) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        let worst = x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "weights differ by {worst}");
        let (sa, sb) = (sa.unwrap().momentum, sb.unwrap().momentum);
        assert_eq!(sa.time, sb.time);
        let (m, n) = (sa.moment_2.into_data().try_to_vec::<f32>().unwrap(), sb.moment_2.into_data().try_to_vec::<f32>().unwrap());
        assert!(m.iter().zip(&n).all(|(p, q)| (p - q).abs() <= 1e-6 * q.abs().max(1.0)));
    }
}
