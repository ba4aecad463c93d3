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
#
# --longer then continues the memory model in the stages that moved the curve in docs/results.md
# (E8-E12), each on freshly generated documents, and prints the passkey table after each of the
# last two (training length 1,024, up to 16x = 16K). About 70 minutes more on 2 cores:
#   runs/passkey-long-256   8,000 more steps at 256 tokens, lr 1e-3
#   runs/passkey-long-1k    2,000 steps on documents of up to 1,024 tokens (a longer training length)
#   runs/passkey-long-delta 1,000 steps at 1,024 with model.memory = "delta" (the same weights,
#                           the delta update rule; it moved 16x in E12, not on this chain)
# Usage: scripts/passkey-demo.sh [--trials N] [--seed S] [--longer]   (the passkey test's trials and key seed)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=10
seed=7
longer=0
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --longer) longer=1; shift ;;
    *) echo "unknown argument $1 (use --trials N, --seed S, --longer)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }

step "building infini (release)"
# INFINI=path/to/infini uses that binary (e.g. a copy, while the tree is rebuilt) instead of building.
if [ -z "${INFINI:-}" ]; then cargo build --release --bin infini; fi
infini=${INFINI:-target/release/infini}

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
    $infini train --config "${config:-configs/passkey-demo.toml}" --run-dir "$run" "$@" && touch "$run/done"
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

[ "$longer" = 1 ] || exit 0

# The passkey card with another seed (fresh documents) and longest document.
card() { # seed, max_tokens, train_docs -> path of the card
  local out=data/passkey-long/passkey-s$1-$2.toml
  mkdir -p data/passkey-long
  sed -e "s/^seed = .*/seed = $1/" -e "s/^max_tokens = .*/max_tokens = $2/" -e "s/^train_docs = .*/train_docs = $3/" \
    datasets/passkey-short.toml > "$out"
  echo "$out"
}
stage() { # run-dir, from, seed, max_tokens, train_docs, overrides...
  local run=$1 from=$2 dseed=$3 len=$4 docs=$5; shift 5
  local data=data/passkey-long/prepared-s$dseed-$len
  $infini data prepare --dataset "$(card "$dseed" "$len" "$docs")" --tokenizer data/tokenizer-passkey.json --out "$data"
  step "$run: from $from, documents of up to $len tokens (seed $dseed) $*"
  start=$(date +%s)
  config=$from/config.toml train "$run" --init-from "$from" --set "data.prepared=\"$data\"" "$@"
  echo "took $(( $(date +%s) - start )) s"
}
table() { # run-dir
  step "passkey accuracy of $1: training length 1K up to 16x (16K), $trials held-out keys per cell"
  $infini passkey --checkpoint "$1" --lengths 1K,4K,16K --depths 0,0.25,0.5,0.75,1 --trials "$trials" --seed "$seed" \
    --json "$1/passkey.json" --diagnose
}
stage runs/passkey-long-256 runs/passkey-demo 1 256 32000 --set train.lr=1e-3 --set train.steps=8000
stage runs/passkey-long-1k runs/passkey-long-256 3 1024 16000 --set train.lr=1e-3 --set train.steps=2000 --set data.seq_len=1024
table runs/passkey-long-1k
stage runs/passkey-long-delta runs/passkey-long-1k 5 1024 8000 --set train.lr=1e-3 --set train.steps=1000 \
  --set data.seq_len=1024 --set 'model.memory="delta"'
table runs/passkey-long-delta
