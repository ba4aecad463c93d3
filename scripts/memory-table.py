"""Table of a scripts/memory-compare.sh folder: RUN_DIR/<variant>-s<seed>/eval-test.json.

Segment starts: the first eighth of each segment's positions, where local attention sees least
and only the memory (or xl's cache) brings the segments before.

Perplexities by segment pool the NLL of every document's segments in the range (per token, not
per segment). The memory gain is ppl(none) / ppl(variant) for the same seed, then averaged.
"""
import json
import math
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {}
for f in sorted(out.glob("*-s*/eval-test.json")):
    variant, seed = f.parent.name.rsplit("-s", 1)
    runs.setdefault(variant, {})[int(seed)] = json.loads(f.read_text())
if not runs:
    sys.exit(f"no finished runs under {out}")


def ppl(result, lo=0, hi=None, key="by_segment"):
    """Perplexity pooled over the entries of `key` (by_segment or by_position) with index in [lo, hi)."""
    stats = [s for s in result.get(key) or [] if s["index"] >= lo and (hi is None or s["index"] < hi)]
    nll, tokens = sum(s["nll"] for s in stats), sum(s["tokens"] for s in stats)
    return math.exp(nll / tokens) if tokens else float("nan")


def fmt(values, digits=2):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def ppl_start(result):
    """Perplexity over the first eighth of every segment but each document's first (eval's
    `by_position`; absent from evaluations made before it existed: NaN)."""
    segment_len = 1 + max((p["index"] for p in result.get("by_position") or []), default=0)
    return ppl(result, 0, max(1, segment_len // 8), key="by_position")


cols = [("all", 0, None), ("segment 0", 0, 1), ("segments 1+", 1, None), ("segments 64+", 64, None)]
print(f"| variant | seeds | test ppl | memory gain vs none | " + " | ".join(f"ppl {c[0]}" for c in cols[1:])
      + " | ppl segment starts (first eighth, segments 1+) | train s |")
print("|---|---|---:|---:|" + "---:|" * (len(cols) - 1) + "---:|---:|")
order = [v for v in ["linear", "delta", "none", "xl"] if v in runs] + sorted(set(runs) - {"linear", "delta", "none", "xl"})
for variant in order:
    by_seed = runs[variant]
    seeds = sorted(by_seed)
    row = [fmt([ppl(by_seed[s]) for s in seeds])]
    gains = [ppl(runs["none"][s]) / ppl(by_seed[s]) for s in seeds if "none" in runs and s in runs["none"]]
    row.append(fmt([100 * (g - 1) for g in gains], 1) + " %" if gains else "")
    for _, lo, hi in cols[1:]:
        row.append(fmt([ppl(by_seed[s], lo, hi) for s in seeds]))
    row.append(fmt([ppl_start(by_seed[s]) for s in seeds]))
    secs = [float((out / f"{variant}-s{s}" / "train-seconds").read_text()) for s in seeds if (out / f"{variant}-s{s}" / "train-seconds").exists()]
    row.append(f"{statistics.median(secs):.0f}" if secs else "")
    print(f"| `{variant}` | {','.join(map(str, seeds))} | " + " | ".join(row) + " |")
