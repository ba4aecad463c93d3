#!/usr/bin/env bash
# Side-by-side training benchmark of infini against the public PyTorch Infini-Transformer
# (infini-transformer-pytorch 0.2.1, by lucidrains, from PyPI) on the same model
# (configs/bench.toml), on this machine, in one run; writes this CPU's block of docs/benchmarks.md
# (one block per CPU model, never mixed).
#
#   scripts/bench-peers.sh                 3 rounds, 5 timed steps after 3 warm-up steps each
#   ROUNDS=5 STEPS=10 scripts/bench-peers.sh
#   EVAL_LENGTHS=8K,64K,1M (default) or EVAL_LENGTHS= to skip the evaluation benchmark (both sides)
#
# Ours and the peer run alternately, in fresh processes, both with THREADS threads (default 2),
# for both memory update rules; the machine's f32 matmul peak (PyTorch's and Flex's) is
# measured in the same run. The first run creates a Python venv (PyTorch from PyPI: about
# 4.5 GB with the CUDA runtime libraries its Linux wheel needs even to import on CPU; ~1 min
# from a nearby mirror) in $INFINI_BENCH_VENV (default ~/.cache/infini/bench-venv).
# Raw JSON results go to runs/bench-peers/<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-2}
EVAL_LENGTHS=${EVAL_LENGTHS-8K,64K,1M}
CONFIG=configs/bench.toml
VENV=${INFINI_BENCH_VENV:-$HOME/.cache/infini/bench-venv}
OUT=runs/bench-peers/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

if ! "$VENV/bin/python" -c "import torch, infini_transformer_pytorch" >/dev/null 2>&1; then
  echo "== creating $VENV (PyTorch 2.15.0, infini-transformer-pytorch 0.2.1)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.15.0" "infini-transformer-pytorch==0.2.1"
fi
PY="$VENV/bin/python"

echo "== building infini (release)"
cargo build --release -q -p infini-cli
INFINI=target/release/infini

# Both sides get the same number of threads: rayon (ours) and torch.set_num_threads (peer).
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
export PYTHONWARNINGS=ignore

for round in $(seq "$ROUNDS"); do
  for memory in linear delta; do
    echo "== round $round/$ROUNDS, $memory: infini"
    "$INFINI" bench train --config "$CONFIG" --set "model.memory=$memory" --steps "$STEPS" --warmup "$WARMUP" \
      --json "$OUT/infini-$memory-$round.json" >/dev/null
    echo "== round $round/$ROUNDS, $memory: infini-transformer-pytorch"
    "$PY" scripts/bench/peer.py --threads "$THREADS" train --config "$CONFIG" --memory "$memory" \
      --steps "$STEPS" --warmup "$WARMUP" >"$OUT/peer-$memory-$round.json" 2>"$OUT/peer-$memory-$round.log"
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['tokens_per_s']['median']:.0f} tokens/s, peak RSS {d['peak_rss_mib']:.0f} MiB\")" \
      "$OUT/peer-$memory-$round.json"
  done
done

echo "== f32 matmul peak (2048³) of this machine"
"$PY" scripts/bench/peer.py --threads "$THREADS" matmul >"$OUT/torch-matmul.json" 2>/dev/null
"$INFINI" bench matmul --json "$OUT/infini-matmul.json" >/dev/null

if [ -n "$EVAL_LENGTHS" ]; then
  echo "== evaluation, lengths $EVAL_LENGTHS (one fresh process each)"
  "$INFINI" bench eval --config "$CONFIG" --lengths "$EVAL_LENGTHS" --json "$OUT/eval.json" >/dev/null
  for length in ${EVAL_LENGTHS//,/ }; do
    echo "== evaluation, $length tokens: infini-transformer-pytorch"
    "$PY" scripts/bench/peer.py --threads "$THREADS" eval --config "$CONFIG" --length "$length" \
      >"$OUT/peer-eval-$length.json" 2>"$OUT/peer-eval-$length.log"
  done
fi

"$PY" scripts/bench/report.py "$OUT" docs/benchmarks.md
echo "== wrote docs/benchmarks.md (raw results in $OUT)"
