#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU, no Rust toolchain and no internet, from
# the folder that `scripts/gpu-check.sh --package DIR` made (this script is DIR/run.sh):
#   1. `infini check` on cuda (and wgpu where a Vulkan driver is present): logits of every
#      memory kind against Flex's from the same weights, causality, gradient through the memory,
#      fused attention against attention written out, training steps in f32 and bf16,
#   2. `infini bench train` on configs/bench.toml (f32) and on the paper's model
#      (configs/paper-pg19.toml: 12 layers, 8 heads of 128, segments of 2048, 16 segments of
#      backprop, bf16, activation checkpointing) with tokens/s, model TFLOP/s and MFU against the
#      GPU's dense bf16 peak, and the peak GPU memory (nvidia-smi, sampled),
#   3. the PyTorch peer (infini-transformer-pytorch, shipped in DIR/peer) on the same two models
#      and the same GPU, where python3 there has PyTorch with CUDA: tokens/s and our ratio to it,
#   4. `infini bench eval` of a 1M-token document with the memory carried,
#   5. with more than one GPU, data-parallel training over all of them against one,
#   6. `infini check` on wgpu (where a Vulkan driver is present).
# It prints one markdown table and leaves every JSON in DIR/results/. About 9-10 minutes on an
# H200 (estimated from its parts: cubecl compiles and autotunes kernels for 2-3 minutes at each
# process's first step); each step has a time limit and a failure is a row of the table, not the end.
# Usage: ./run.sh [--quick]   (--quick: small shapes, for trying the script itself)
# Environment: INFINI_BACKEND (default cuda; flex or wgpu to try the script on any machine),
# INFINI_PEAK_TFLOPS (the GPU's dense bf16 peak, when its name is not in the table below),
# CHECK_LIMIT / TRAIN_LIMIT / EVAL_LIMIT (each step's time limit in seconds: 600 / 420 / 420).
set -uo pipefail
cd "$(dirname "$0")"
backend=${INFINI_BACKEND:-cuda}
quick=0
[ "${1:-}" = "--quick" ] && quick=1
check_limit=${CHECK_LIMIT:-600} train_limit=${TRAIN_LIMIT:-420} eval_limit=${EVAL_LIMIT:-420}
mkdir -p results
log=results/run.log
: >"$log"

# The binary travels compressed (xz); unpack it once.
if [ ! -x infini ]; then
  if command -v xz >/dev/null; then xz -dc infini.xz >infini.tmp
  elif command -v python3 >/dev/null; then python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open("infini.xz").read())' >infini.tmp
  else echo "error: need xz or python3 to unpack infini.xz" >&2; exit 1
  fi
  chmod +x infini.tmp && mv infini.tmp infini
fi
bin=./infini

# cubecl opens the driver (libcuda) and NVRTC at run time. NVRTC often sits only in the CUDA
# toolkit's folder or in a Python package's (nvidia-cuda-nvrtc): put the first one found on the path.
if [ "$backend" = cuda ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  nvrtc=$(find /usr/local/cuda*/ /opt /usr/lib /usr/local/lib -maxdepth 9 -name 'libnvrtc.so*' 2>/dev/null | sort -r | head -1)
  [ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "NVRTC: ${nvrtc:-not found}" >&2
fi

# The GPU, its count and its dense bf16 peak (TFLOP/s, vendor data sheets).
gpu=none; gpus=0
if command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
fi
peak=${INFINI_PEAK_TFLOPS:-}
if [ -z "$peak" ]; then
  case "$gpu" in
    *B200*) peak=2250 ;; *H200*|*H100*SXM*|*"H100 80GB HBM3"*) peak=989 ;; *H100*NVL*) peak=835 ;; *H100*) peak=756 ;;
    *A100*) peak=312 ;; *L40S*) peak=362 ;; *L40*) peak=181 ;; *A10G*|*A10*) peak=125 ;; *L4*) peak=121 ;;
    *"RTX 4090"*) peak=165 ;; *"RTX 6000 Ada"*) peak=364 ;;
  esac
fi
peak_arg=()
[ -n "$peak" ] && peak_arg=(--peak-tflops "$peak")

# Peak GPU memory of a step: nvidia-smi sampled every 200 ms while it runs (MiB, all GPUs summed).
sampler=
start_sampling() {
  : >results/gpu-mem.txt
  if [ "$gpus" -gt 0 ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >results/gpu-mem.txt 2>/dev/null &
    sampler=$!
  fi
}
stop_sampling() { # prints the peak in MiB of the first GPU's samples, or "n/a"
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
  sampler=
  awk -v g="$gpus" 'NR % g == 1 || g == 1 { if ($1 + 0 > m) m = $1 + 0 } END { if (m) printf "%d MiB", m; else printf "n/a" }' results/gpu-mem.txt
}
num() { # the first number of "key": in a JSON file
  grep -o "\"$2\": *[-0-9.e+]*" "$1" 2>/dev/null | head -1 | sed 's/.*: *//'
}
tokens_per_s() { # of a `bench train` JSON: its model GFLOP/s over its FLOP per token
  awk -v g="$(num "$1" gflop_per_s)" -v f="$(num "$1" flop_per_token)" 'BEGIN { if (f > 0) print g * 1e9 / f }'
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "n/a"; else printf f, v }'; }

rows=()
step() { # name, time limit (s), command...: runs it, logs it (its own output also in results/last.log), returns its status
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee -a "$log" >&2
  timeout "$limit" "$@" >results/last.log 2>&1
  local rc=$?
  cat results/last.log >>"$log"
  [ $rc -eq 124 ] && echo "   (stopped after $limit s)" | tee -a "$log" >&2
  return $rc
}

# 1. Correctness.
check() { # backend
  local b=$1
  if step "check $b" "$check_limit" $bin check --backend "$b" --json "results/check-$b.json"; then
    rows+=("| check | $b | all $(grep -c '"passed": true' "results/check-$b.json") checks pass | | | |")
  elif [ "$b" = wgpu ] && grep -q "the wgpu backend cannot start" results/last.log; then
    rows+=("| check | wgpu | skipped: no Vulkan driver | | | |")
  else
    rows+=("| check | $b | **FAILED**: $(grep -m1 -E 'FAIL|error' results/last.log | tail -c 200 | tr '|' '/') | | | |")
  fi
}
check "$backend"

# 2. Training throughput.
bench_train() { # id, label, config, extra args...
  local id=$1 label=$2 config=$3; shift 3
  local json="results/train-$id.json"
  start_sampling
  if step "bench train $label" "$train_limit" $bin bench train --backend "$backend" --config "$config" "${peak_arg[@]}" --json "$json" "$@"; then
    local mem; mem=$(stop_sampling)
    local tps tflops mfu
    tflops=$(num "$json" gflop_per_s); mfu=$(num "$json" mfu)
    tps=$(tokens_per_s "$json")
    rows+=("| train | $label | $(fmt "$tps" '%.0f') tokens/s | $(awk -v g="$tflops" 'BEGIN { printf "%.2f", g / 1000 }') TFLOP/s | $(awk -v m="$mfu" 'BEGIN { if (m == "") print "n/a"; else printf "%.1f%%", 100 * m }') | $mem |")
  else
    stop_sampling >/dev/null
    rows+=("| train | $label | **FAILED** (results/run.log) | | | |")
  fi
}
# 3. The peer: the same model, steps and optimizer in PyTorch (bf16 by autocast), same GPU.
peer_ok=0
if [ -f peer/peer.py ] && [ "$backend" = cuda ] &&
    PYTHONPATH=peer/site python3 -c 'import torch, einops, infini_transformer_pytorch; assert torch.cuda.is_available()' 2>/dev/null; then
  peer_ok=1
fi
peer_train() { # id, label, config, precision, steps, warmup
  local id=$1 label=$2 config=$3 precision=$4 steps=$5 warmup=$6
  [ $peer_ok = 1 ] || return 0
  local json="results/peer-$id.json" ours="results/train-$id.json"
  if step "peer train $label" "$train_limit" sh -c "PYTHONPATH=peer/site PYTHONWARNINGS=ignore python3 peer/peer.py --device cuda train \
      --config $config --precision $precision --steps $steps --warmup $warmup >$json"; then
    local tps mine mem
    tps=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tokens_per_s"]["median"])' "$json" 2>/dev/null)
    mem=$(num "$json" peak_device_mib)
    mine=$(tokens_per_s "$ours")
    rows+=("| peer train | $label | $(fmt "$tps" '%.0f') tokens/s; infini $(awk -v a="$mine" -v b="$tps" 'BEGIN { if (a > 0 && b > 0) printf "%.2f×", a / b; else print "n/a" }') the peer | | | $(fmt "$mem" '%.0f MiB') (allocated) |")
  else
    rows+=("| peer train | $label | **FAILED** (results/run.log) | | | |")
  fi
}
[ -f peer/peer.py ] && [ "$backend" = cuda ] && [ $peer_ok = 0 ] && rows+=("| peer train | | skipped: python3 here has no PyTorch with CUDA | | | |")

if [ $quick = 1 ]; then
  bench_train bench "bench (f32, quick)" configs/bench.toml --steps 2 --warmup 1 --set model.n_layers=1 --set data.seq_len=512
  bench_train paper "paper-size (bf16, quick)" configs/paper-pg19.toml --steps 1 --warmup 0 --set model.n_layers=1 --set model.d_model=256 \
    --set model.n_heads=2 --set model.ffn_hidden=512 --set model.segment_len=256 --set data.seq_len=512 --set train.checkpointing=true
else
  paper="paper-size (bf16, 32K tokens, checkpointing)"
  bench_train paper "$paper" configs/paper-pg19.toml --steps 5 --warmup 2 --set train.checkpointing=true
  peer_train paper "$paper" configs/paper-pg19.toml bf16 5 2
  bench_train bench "bench (f32)" configs/bench.toml --steps 10 --warmup 3
  peer_train bench "bench (f32)" configs/bench.toml f32 10 3
fi

# 4. Evaluation of a long document, the memory carried.
length=1M; [ $quick = 1 ] && length=8K
start_sampling
if step "bench eval $length" "$eval_limit" $bin bench eval --backend "$backend" --config configs/bench.toml --lengths $length --json results/eval.json; then
  rows+=("| eval | bench, $length tokens | $(fmt "$(num results/eval.json tokens_per_s)" '%.0f') tokens/s | | | $(stop_sampling) |")
else
  stop_sampling >/dev/null
  rows+=("| eval | bench, $length tokens | **FAILED** (results/run.log) | | | |")
fi

# 5. Data parallel over every GPU, against one (tiny synthetic corpus, made here).
# INFINI_DP_DEVICES=N tries it with N devices of any backend (Flex repeats its one device).
dp=${INFINI_DP_DEVICES:-$gpus}
if [ "$dp" -gt 1 ]; then
  if step "data for data parallel" 300 sh -c "$bin tokenizer train --dataset datasets/passkey.toml --vocab-size 320 --split-digits --out results/tok.json &&
        $bin data prepare --dataset datasets/passkey.toml --tokenizer results/tok.json --out results/prepared"; then
    for n in 1 "$dp"; do
      rm -rf "results/dp-$n"
      if step "train on $n device(s)" 420 $bin train --backend "$backend" --devices "$n" --config configs/bench.toml --run-dir "results/dp-$n" \
          --set data.prepared=\"results/prepared\" --set model.vocab_size=320 --set data.batch_size=$((4 * dp)) --set data.seq_len=512 \
          --set train.steps=30 --set eval.every=0 --set checkpoint.every=0; then
        tps=$(grep -o '"tokens_per_s":[0-9.e+]*' "results/dp-$n/metrics.jsonl" | tail -1 | sed 's/.*://')
        rows+=("| data parallel | $n device(s), batch $((4 * dp)) | $(fmt "$tps" '%.0f') tokens/s | | | |")
      else
        rows+=("| data parallel | $n device(s) | **FAILED** (results/run.log) | | | |")
      fi
    done
  fi
fi

# 6. The other GPU backend on the same card.
[ "$backend" = cuda ] && [ "${WGPU_CHECK:-1}" = 1 ] && check wgpu

{
echo
echo "GPU: $gpu × $gpus, bf16 peak ${peak:-unknown} TFLOP/s; infini $($bin --version | awk '{print $2}'), backend $backend"
echo
echo "| what | config | result | model TFLOP/s | MFU | peak GPU memory |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
} | tee results/table.md
echo
echo "logs and JSON: $(pwd)/results"
