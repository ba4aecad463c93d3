#!/usr/bin/env bash
# Memory variants on long text, several seeds: trains configs/tiny.toml once per (variant, seed)
# on the stand-in books, evaluates each on the test books (first 64K tokens of each, streamed with
# the memory) and prints a table: test perplexity mean ± sd over seeds, the memory gain
# (ppl of `none` ÷ ppl of the variant, paired by seed), and perplexity by segment position.
#
#   scripts/memory-compare.sh [--seeds "0 1 2"] [--variants "linear delta none xl"] [--out runs/cmp]
#                             [--config configs/tiny.toml] [-- extra infini-train overrides]
# e.g. scripts/memory-compare.sh --out runs/cmp-long -- --set train.steps=1200
# Re-running skips finished runs (each holds a `done` marker and eval-test.json).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="0 1 2"
variants="linear delta none xl"
out=runs/cmp
config=configs/tiny.toml
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
extra=("$@")

# INFINI=path/to/infini uses that binary (e.g. a copy, while the tree is rebuilt) instead of building.
if [ -z "${INFINI:-}" ]; then cargo build --release --bin infini; fi
infini=${INFINI:-target/release/infini}
INFINI=$infini scripts/prepare-books.sh

mkdir -p "$out"
for seed in $seeds; do
  for m in $variants; do
    run="$out/$m-s$seed"
    if [ -f "$run/done" ]; then echo "$run is done"; continue; fi
    rm -rf "$run"
    printf '\n== %s: memory=%s seed=%s\n' "$run" "$m" "$seed"
    start=$(date +%s)
    $infini train --config "$config" --run-dir "$run" --set "model.memory=\"$m\"" \
      --set "train.seed=$seed" --set "data.seed=$seed" "${extra[@]}"
    echo "$(( $(date +%s) - start ))" > "$run/train-seconds"
    $infini eval --checkpoint "$run" --split test --max-tokens-per-doc 65536 --json "$run/eval-test.json"
    touch "$run/done"
  done
done

python3 scripts/memory-table.py "$out"
