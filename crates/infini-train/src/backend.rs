//! Choosing the compute backend at run time: `flex` (CPU, always), `wgpu` and `cuda` (cargo
//! features). A backend that is compiled in but has no usable device (no Vulkan/Metal/DX12
//! driver, no CUDA driver) is reported as an error instead of Burn's panic.

use burn::tensor::{Device, Tensor};

/// The backends this binary was built with.
pub fn available() -> Vec<&'static str> {
    let mut v = vec!["flex"];
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}

/// The device of backend `name`, checked to work, or an error naming what is missing.
pub fn device(name: &str) -> Result<Device, String> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" => probe(wgpu()?, "wgpu", "no GPU adapter found: install a Vulkan (or Metal/DX12) driver; on Debian without a GPU, `apt-get install libvulkan1 mesa-vulkan-drivers` gives the lavapipe CPU driver"),
        "cuda" => probe(cuda()?, "cuda", "no usable CUDA device: check the NVIDIA driver (libcuda.so) and `nvidia-smi`"),
        other => Err(format!("unknown backend `{other}`: this binary has {}", available().join(", "))),
    }
}

/// Whether `device` runs f32 matrix products with TF32 operands (10-bit mantissa). cubek's matmul
/// does on CUDA tensor cores (its `adjust_dtypes` stages f32 inputs as TF32 wherever the device
/// supports TF32), as PyTorch does with `allow_tf32`; measured on an H200, logits of a small
/// model then differ from Flex's by 7.2e-3 of the largest. Checks against Flex widen their bound.
pub fn tf32_matmul(device: &Device) -> bool {
    #[cfg(feature = "cuda")]
    if let burn::backend::DispatchDevice::Cube(d) = device.clone().without_autodiff().as_dispatch() {
        return d.runtime() == burn::backend::cubecl::RuntimeId::Cuda;
    }
    let _ = device;
    false
}

/// `count` devices of backend `name` for data parallelism, the first being the main one. Flex has
/// one CPU device, which it repeats (a correctness check with no speed-up; Flex already uses every
/// core); `cuda` takes GPUs 0..count and `wgpu` discrete GPUs 0..count.
pub fn devices(name: &str, count: usize) -> Result<Vec<Device>, String> {
    if count <= 1 {
        return Ok(vec![device(name)?]);
    }
    (0..count)
        .map(|i| match name {
            "flex" | "cpu" => Ok(Device::flex()),
            "cuda" => probe(cuda_index(i)?, "cuda", "no usable CUDA device at this index: check `nvidia-smi`"),
            "wgpu" => probe(wgpu_discrete(i)?, "wgpu", "fewer discrete GPUs than --devices"),
            other => device(other),
        })
        .collect()
}

/// Runs a tiny computation on `device`, turning a panic (Burn's way to report a missing
/// driver) into an error.
fn probe(device: Device, name: &str, hint: &str) -> Result<Device, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(|| {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
        t.sum().into_scalar::<f32>()
    });
    std::panic::set_hook(hook);
    match ok {
        Ok(v) if v == 3.0 => Ok(device),
        Ok(v) => Err(format!("the {name} backend computed 1 + 2 = {v}: the device is not working")),
        Err(_) => Err(format!("the {name} backend cannot start: {hint}")),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, String> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(feature = "wgpu")]
fn wgpu_discrete(i: usize) -> Result<Device, String> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_discrete(_: usize) -> Result<Device, String> {
    wgpu()
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, String> {
    Err("this infini was built without the wgpu backend: rebuild with `cargo build --release --features wgpu`".into())
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, String> {
    cuda_index(0)
}

#[cfg(feature = "cuda")]
fn cuda_index(i: usize) -> Result<Device, String> {
    Ok(Device::cuda(i))
}

#[cfg(not(feature = "cuda"))]
fn cuda_index(_: usize) -> Result<Device, String> {
    cuda()
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, String> {
    Err("this infini was built without the cuda backend: rebuild with `cargo build --release --features cuda` (see README, Backends)".into())
}

/// Runs `f` on a worker thread of a rayon pool (one thread per core unless `RAYON_NUM_THREADS`
/// says otherwise), or directly if this already is one. Flex and the fused host ops share work
/// through rayon; called from outside a pool, the caller's thread runs the serial parts while
/// the pool's threads, as many as there are cores, spin between parallel parts — one thread
/// more than cores. Inside the pool the serial parts run on a worker itself, which is faster
/// (docs/benchmarks.md).
pub fn in_worker_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
