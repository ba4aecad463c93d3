#!/usr/bin/env bash
# Makes `cargo build --features cuda` work without internet access.
#
# Burn 0.22's CUDA backend reaches LLVM through cubecl-llvm → llvm-sys (LLVM 23.1), whose
# build dependency `tracel-llvm-bundler` 23.1.0-4 downloads a prebuilt LLVM from GitHub at build
# time. Online, nothing is needed: `cargo build --release --features cuda` downloads it. Offline,
# this script puts Debian's LLVM 22 where the bundler looks for its download:
#   $XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/{include,lib} -> /usr/lib/llvm-22/...
#   .../bin/llvm-config   a wrapper of LLVM 22's that prints `-lz3` instead of an absolute libz3.so
#   .../.tracel-llvm-installed   the bundler's "already installed" marker
# then build with the same XDG_DATA_HOME:
#   scripts/setup-cuda-offline.sh
#   XDG_DATA_HOME=$PWD/.cuda-llvm cargo build --release --features cuda
# Idempotent. Needs root for apt-get (Debian bookworm: llvm-22-dev from bookworm-security).
# At run time cubecl compiles kernels with NVRTC (the `cpp` compiler) or LLVM; the LLVM 22
# stand-in has not been verified on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${INFINI_LLVM_HOME:-$PWD/.cuda-llvm}   # used as XDG_DATA_HOME for the cuda build
dir="$data/tracel/tracel-llvm-23.1.0-4"

if [ ! -x /usr/lib/llvm-22/bin/llvm-config ]; then
  apt-get install -y -qq llvm-22-dev libpolly-22-dev libzstd-dev >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq llvm-22-dev libpolly-22-dev libzstd-dev >/dev/null; }
fi

# Files are rewritten only when they differ: a new timestamp would make cargo rebuild the CUDA
# crates (their build scripts watch these files).
mkdir -p "$dir/bin"
for part in include lib; do
  [ "$(readlink "$dir/$part" 2>/dev/null)" = "/usr/lib/llvm-22/$part" ] || ln -sfn "/usr/lib/llvm-22/$part" "$dir/$part"
done
wrapper=$(cat <<'WRAP'
#!/usr/bin/env bash
# LLVM 22's llvm-config, with the absolute path of libz3 it may print rewritten to -lz3.
/usr/lib/llvm-22/bin/llvm-config "$@" | sed -E 's#[^ ]*/libz3\.so(\.[0-9.]+)?#-lz3#g'
WRAP
)
if [ "$(cat "$dir/bin/llvm-config" 2>/dev/null)" != "$wrapper" ]; then
  printf '%s\n' "$wrapper" >"$dir/bin/llvm-config"
fi
chmod +x "$dir/bin/llvm-config"
[ -f "$dir/.tracel-llvm-installed" ] || touch "$dir/.tracel-llvm-installed"
echo "LLVM stand-in ready in $dir"
echo "build with:  XDG_DATA_HOME=$data cargo build --release --features cuda"
