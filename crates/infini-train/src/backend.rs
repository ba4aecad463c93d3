//! Choosing the compute backend at run time: `flex` (CPU, always), `wgpu` and `cuda` (cargo features).

use burn::tensor::Device;

/// The backends this binary can use, for `--help` texts and errors.
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

/// The device of backend `name`, or an error naming the cargo feature to build with.
pub fn device(name: &str) -> Result<Device, String> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" => wgpu(),
        "cuda" => cuda(),
        other => Err(format!("unknown backend `{other}`: use one of {}", available().join(", "))),
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
