#!/usr/bin/env bash
# Fault injection: kill -9 `infini data prepare` and `infini train` at random moments, resume each
# time, and check that nothing was lost:
#   (a) every checkpoint and shard folder the loader would pick up is complete and loads,
#   (b) the loss curve of the interrupted run is bit-identical to an uninterrupted run,
#   (c) `data prepare` resumed after kills writes byte-identical shards.
# Prints "N kills, N resumes, 0 corrupt, curves identical" or fails.
#
#   scripts/fault-test.sh [KILLS] [WORK_DIR]      (default 20 kills, a temporary folder)
# Uses target/release/infini (or $INFINI); a tiny generated corpus, so it needs no downloads.
# STEPS (default 900) sets the length of the training runs. Checkpoint writes are slowed down
# (INFINI_CHECKPOINT_DELAY_MS) in the killed runs so that many kills land in the middle of one.
set -euo pipefail
cd "$(dirname "$0")/.."
kills_wanted=${1:-20}
steps=${STEPS:-900}
work=${2:-$(mktemp -d)}
infini=${INFINI:-$PWD/target/release/infini}
[ -x "$infini" ] || cargo build --release --bin infini
mkdir -p "$work"
cd "$work"
rm -rf corpus prep-* run-* ./*.toml tok.json

# A small corpus of pseudo-English books (deterministic).
python3 - <<'EOF'
import os, random
random.seed(7)
words = "the memory of a long book reads and writes every segment while attention looks back over time".split()
for i in range(12):
    split = "validation" if i == 10 else "test" if i == 11 else "train"
    os.makedirs(f"corpus/{split}", exist_ok=True)
    with open(f"corpus/{split}/book{i:02}.txt", "w") as f:
        f.write(" ".join(random.choice(words) for _ in range(6000)) + "\n")
EOF
"$infini" tokenizer train --dataset corpus --vocab-size 300 --out tok.json >/dev/null 2>&1

kills=0
resumes=0
corrupt=0
in_write=0
rand_sleep() { python3 -c "import random; print(round(random.uniform($1, $2), 3))"; }

# (c) data prepare, killed repeatedly, against an uninterrupted reference.
"$infini" data prepare --dataset corpus --tokenizer tok.json --out prep-ref --shard-tokens 3000 >/dev/null 2>&1
for _ in $(seq 1 $((kills_wanted / 4 + 1))); do
  "$infini" data prepare --dataset corpus --tokenizer tok.json --out prep-kill --shard-tokens 3000 >/dev/null 2>&1 &
  pid=$!
  sleep "$(rand_sleep 0.01 0.12)"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  if [ -f prep-kill/manifest.json ]; then break; fi
  resumes=$((resumes + 1))
done
"$infini" data prepare --dataset corpus --tokenizer tok.json --out prep-kill --shard-tokens 3000 >/dev/null 2>&1
if ! diff -r prep-ref prep-kill >/dev/null; then
  echo "FAIL: prepared shards differ after kills" >&2
  exit 1
fi

# (a, b) training, killed repeatedly, against an uninterrupted reference.
cat >run.toml <<EOF
[model]
vocab_size = 300
d_model = 32
n_layers = 2
n_heads = 2
ffn_hidden = 64
segment_len = 16

[data]
prepared = "prep-ref"
batch_size = 2
seq_len = 64

[train]
steps = $steps
lr = 1e-2
warmup_steps = 5
grad_accum = 2
tbptt_segments = 2

[eval]
every = 100
max_docs = 1
max_tokens_per_doc = 200

[checkpoint]
dir = "run-ref"
every = 4
keep_last = 2
EOF
"$infini" train --config run.toml >/dev/null 2>&1

check_checkpoints() {
  local ckpt
  for ckpt in run-kill/checkpoints/step-* run-kill/checkpoints/best; do
    [ -e "$ckpt" ] || continue
    for f in model.bpk optimizer.bpk state.json config.toml; do
      if [ ! -s "$ckpt/$f" ]; then corrupt=$((corrupt + 1)); echo "corrupt: $ckpt lacks $f" >&2; fi
    done
  done
  local latest
  latest=$(ls -d run-kill/checkpoints/step-* 2>/dev/null | sort | tail -n 1 || true)
  if [ -n "$latest" ] && ! "$infini" eval --checkpoint "$latest" --split validation --max-docs 1 --max-tokens-per-doc 20 >/dev/null 2>&1; then
    corrupt=$((corrupt + 1))
    echo "corrupt: $latest does not load" >&2
  fi
}

first=1
while :; do
  if [ $first -eq 1 ]; then args=(--config run.toml --run-dir run-kill); else args=(--resume run-kill); fi
  if [ $kills -ge "$kills_wanted" ]; then
    "$infini" train "${args[@]}" >/dev/null 2>&1
    [ $first -eq 1 ] || resumes=$((resumes + 1))
    break
  fi
  INFINI_CHECKPOINT_DELAY_MS=10 "$infini" train "${args[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$(rand_sleep 0.03 0.35)"
  if kill -9 "$pid" 2>/dev/null; then
    kills=$((kills + 1))
    wait "$pid" 2>/dev/null || true
    if ls -d run-kill/checkpoints/.step-*.tmp-* >/dev/null 2>&1; then in_write=$((in_write + 1)); fi
  else
    wait "$pid" 2>/dev/null || true
    break  # it finished before the kill
  fi
  [ $first -eq 1 ] || resumes=$((resumes + 1))
  if ls -d run-kill/checkpoints/step-* >/dev/null 2>&1; then first=0; else rm -rf run-kill; fi
  check_checkpoints
done
check_checkpoints

curve() { python3 -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['kind'] == 'train':
        print(r['step'], repr(r['loss']))
" "$1"; }
if [ "$(curve run-ref/metrics.jsonl)" != "$(curve run-kill/metrics.jsonl)" ]; then
  echo "FAIL: the interrupted run's loss curve differs from the uninterrupted one" >&2
  diff <(curve run-ref/metrics.jsonl) <(curve run-kill/metrics.jsonl) | head >&2
  exit 1
fi
if [ "$(curve run-ref/metrics.jsonl | wc -l)" -ne "$steps" ]; then
  echo "FAIL: the reference run did not log $steps steps" >&2
  exit 1
fi
if [ $corrupt -ne 0 ]; then
  echo "FAIL: $corrupt corrupt checkpoints" >&2
  exit 1
fi
echo "($in_write of the training kills landed inside a checkpoint write)" >&2
echo "$kills kills, $resumes resumes, $corrupt corrupt, curves identical"
