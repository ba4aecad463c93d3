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

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, String> {
    Err("this infini was built without the wgpu backend: rebuild with `cargo build --release --features wgpu`".into())
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device, String> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device, String> {
    Err("this infini was built without the cuda backend: rebuild with `cargo build --release --features cuda` (see README, Backends)".into())
}
