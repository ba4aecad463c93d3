#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU and no internet or Rust toolchain.
#
#   scripts/gpu-check.sh --package DIR   on a CPU machine (Debian; root once for the offline CUDA
#                                        setup): builds a release infini with the cuda and wgpu
#                                        backends (Burn's fusion and autotune on), strips it,
#                                        compresses it (xz) and puts it with run.sh, the configs
#                                        and the dataset card it needs into DIR (about 30 MiB).
#                                        A fresh build takes about 27 minutes on 2 cores.
#   DIR/run.sh [--quick]                 on the GPU machine (copy DIR there): backend self-checks
#                                        against Flex, training and evaluation benchmarks with
#                                        tokens/s, TFLOP/s, MFU and peak GPU memory, data parallel
#                                        over all GPUs, the PyTorch peer on the same GPU (shipped
#                                        as pure Python; PyTorch must be there); prints one
#                                        markdown table (see run.sh).
#   scripts/gpu-check.sh --try DIR       runs DIR/run.sh --quick here on Flex (CPU), to try the
#                                        package's script without a GPU.
#
# Environment: CARGO_TARGET_DIR (default target/gpu, apart from the CPU build's target/).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/gpu-check.sh --package DIR | --try DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
mode=$1 dir=$2

case "$mode" in
  --package)
    scripts/setup-cuda-offline.sh
    target=${CARGO_TARGET_DIR:-$PWD/target/gpu}
    echo "== building infini with cuda and wgpu into $target (about 27 minutes on 2 cores the first time)"
    XDG_DATA_HOME=$PWD/.cuda-llvm CARGO_TARGET_DIR=$target cargo build --release -p infini-cli --features cuda,wgpu
    mkdir -p "$dir/configs" "$dir/datasets"
    tmp=$(mktemp "$dir/.infini.XXXXXX")
    trap 'rm -f "$tmp" "$tmp.xz"' EXIT
    strip -o "$tmp" "$target/release/infini"
    echo "== compressing the binary ($(du -m "$tmp" | cut -f1) MiB stripped)"
    xz -9 -T0 -f "$tmp"
    mv "$tmp.xz" "$dir/infini.xz"
    chmod 644 "$dir/infini.xz"
    rm -f "$dir/infini"   # a stale unpacked binary would be run instead of the new one
    cp scripts/gpu/run.sh "$dir/run.sh"
    cp configs/bench.toml configs/paper-pg19.toml "$dir/configs/"
    cp datasets/passkey.toml "$dir/datasets/"
    # The PyTorch peer, pure Python (PyTorch itself is the GPU machine's): run.sh compares with it.
    echo "== the peer (infini-transformer-pytorch 0.2.1, rotary-embedding-torch) into $dir/peer"
    rm -rf "$dir/peer" && mkdir -p "$dir/peer/site"
    cp scripts/bench/peer.py "$dir/peer/"
    if python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir/peer/wheels" \
        infini-transformer-pytorch==0.2.1 rotary-embedding-torch==0.9.1 2>/dev/null; then
      for w in "$dir"/peer/wheels/*.whl; do python3 -m zipfile -e "$w" "$dir/peer/site"; done
      rm -rf "$dir/peer/wheels" "$dir"/peer/site/*.dist-info
    else
      echo "warning: could not download the peer from PyPI; run.sh will skip it" >&2
      rm -rf "$dir/peer"
    fi
    size=$(du -sm "$dir" | cut -f1)
    echo "== $dir: ${size} MiB in all"
    [ "$size" -le 60 ] || echo "warning: the package is over 60 MiB" >&2
    echo "copy $dir to the GPU machine and run:  $dir/run.sh"
    ;;
  --try)
    [ -f "$dir/run.sh" ] || { echo "error: $dir has no run.sh: make it with --package $dir first" >&2; exit 1; }
    INFINI_BACKEND=flex "$dir/run.sh" --quick
    ;;
  *) usage ;;
esac
