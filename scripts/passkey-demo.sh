#!/usr/bin/env bash
# Does the memory work? Passkey retrieval learned from scratch on CPU, with and without memory.
#   1. generate the passkey task (datasets/passkey-short.toml: documents of 128-256 tokens, the
#      key's digits one token each) and a 320-id tokenizer that splits digits,
#   2. train configs/passkey-demo.toml twice: runs/passkey-demo (Infini-attention, linear memory,
#      7,500 steps) and runs/passkey-demo-none (the same recipe with memory = "none", 2,000 steps:
#      without memory the answer loss stops falling within 1,000; the time goes to the memory run),
#   3. print both passkey tables from the training length (256 tokens) to 16x it (4K), with
#      held-out keys, 10 trials per cell, and where the memory's read goes (--diagnose).
# About 30 minutes on 2 cores after the build. Re-running skips what is done.
# Usage: scripts/passkey-demo.sh [--trials N] [--seed S]   (the passkey test's trials and key seed)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=10
seed=7
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "unknown argument $1 (use --trials N, --seed S)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }

step "building infini (release)"
cargo build --release --bin infini
infini=target/release/infini

step "generating the passkey task and its tokenizer"
if [ ! -f data/tokenizer-passkey.json ]; then
  $infini tokenizer train --dataset datasets/passkey-short.toml --vocab-size 320 --split-digits --out data/tokenizer-passkey.json
fi
$infini data prepare --dataset datasets/passkey-short.toml --tokenizer data/tokenizer-passkey.json --out data/prepared-passkey-short

train() { # run-dir, extra overrides...
  local run=$1; shift
  if [ -f "$run/checkpoints/best/model.bpk" ] && [ -f "$run/done" ]; then
    echo "$run is trained (delete it to train again)"
  elif [ -d "$run/checkpoints" ]; then
    $infini train --resume "$run" && touch "$run/done"
  else
    $infini train --config configs/passkey-demo.toml --run-dir "$run" "$@" && touch "$run/done"
  fi
}

step "training with memory (runs/passkey-demo)"
start=$(date +%s)
train runs/passkey-demo
echo "took $(( $(date +%s) - start )) s"

step "training without memory (runs/passkey-demo-none)"
start=$(date +%s)
train runs/passkey-demo-none --set 'model.memory="none"' --set train.steps=2000
echo "took $(( $(date +%s) - start )) s"

for run in runs/passkey-demo runs/passkey-demo-none; do
  step "passkey accuracy of $run: training length 256 up to 16x (4K), $trials held-out keys per cell"
  $infini passkey --checkpoint "$run" --lengths 256,512,1K,2K,4K --depths 0,0.25,0.5,0.75,1 --trials "$trials" --seed "$seed" \
    --json "$run/passkey.json" --diagnose
done
