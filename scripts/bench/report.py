"""Writes the measured part of docs/benchmarks.md from a scripts/bench-peers.sh run.

  report.py RUN_DIR docs/benchmarks.md

Each CPU model gets its own block, between `<!-- bench-peers:CPU:begin -->` and
`<!-- bench-peers:CPU:end -->` markers: a run replaces the block of the CPU it ran on and leaves
the others (and the hand-written notes around them) alone, so figures of different machines are
never mixed in one table. A CPU without a block gets a new one at the end of the file.
"""
import glob
import json
import os
import platform
import statistics
import subprocess
import sys



def markers(cpu):
    return f"<!-- bench-peers:{cpu}:begin -->", f"<!-- bench-peers:{cpu}:end -->"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def spread(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def main():
    run, target = sys.argv[1], sys.argv[2]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = []
    ours_paths = [(p, json.load(open(p))) for p in sorted(glob.glob(f"{run}/infini-*-*.json"))]
    peer_paths = [(p, json.load(open(p))) for p in sorted(glob.glob(f"{run}/peer-*-*.json")) if "/peer-eval-" not in p]
    ours_all = [r for _, r in ours_paths]
    peers_all = [r for _, r in peer_paths]
    if not ours_all or not peers_all:
        sys.exit(f"no results in {run}")
    torch_mm = json.load(open(f"{run}/torch-matmul.json"))
    flex_mm = json.load(open(f"{run}/infini-matmul.json"))
    flex_square = max(r["gflop_per_s"] for r in flex_mm["matmul"] if r["m"] == r["n"] == r["k"])
    threads = ours_all[0]["threads"]
    rounds = len(ours_all) // 2
    lines += [
        f"Measured by `scripts/bench-peers.sh` on {os.path.basename(run)} (UTC): {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs, both sides with {os.environ.get('THREADS', '2')} threads; "
        f"infini {commit} (Flex backend, f32), PyTorch {peers_all[0]['torch']} with "
        f"infini-transformer-pytorch 0.2.1; configs/bench.toml ({ours_all[0]['parameters']:,} parameters "
        f"here, {peers_all[0]['parameters']:,} in the peer, which adds biases); {rounds} rounds alternating, "
        f"each {len(ours_all[0]['step_s']['all'])} timed steps after {ours_all[0]['warmup']} warm-up. "
        "Figures are the median over rounds of each round's median step (min–max over rounds); the ratio is "
        "the median of the rounds' own ratios (each round's two runs are back to back, so the machine's drift "
        "cancels), with the rounds' ratios in brackets.",
        "",
        f"f32 matmul peak of this machine, measured in the same run: PyTorch {torch_mm['gflop_per_s']:.0f} GFLOP/s "
        f"(2048³), Flex {flex_square:.0f} GFLOP/s (best square size).",
        "",
        "### Training (2048 tokens per step, batch 1, memory detached every 2 segments, AdamW, clipping 1.0)",
        "",
        "| memory | infini tokens/s | peer tokens/s | ratio (per round) | infini s/step | peer s/step | infini peak RSS | peer peak RSS | RSS ratio | infini model GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for memory in ("linear", "delta"):
        ours = [r for _, r in sorted((p, r) for p, r in ours_paths if r["memory"] == memory)]
        peer = [r for _, r in sorted((p, r) for p, r in peer_paths if r["memory"] == memory)]
        if not ours or not peer:
            continue
        o_tps = [r["tokens_per_s"]["median"] for r in ours]
        p_tps = [r["tokens_per_s"]["median"] for r in peer]
        o_rss = [r["peak_rss_mib"] for r in ours]
        p_rss = [r["peak_rss_mib"] for r in peer]
        # Rounds pair the two sides in time, so the machine's drift cancels in each round's ratio.
        rounds_ratio = [o / p for o, p in zip(o_tps, p_tps)]
        ratio = statistics.median(rounds_ratio)
        rss_ratio = statistics.median(o_rss) / statistics.median(p_rss)
        gflops = statistics.median(r["gflop_per_s"] for r in ours)
        lines.append(
            f"| {memory} | {spread(o_tps, lambda v: f'{v:,.0f}')} | {spread(p_tps, lambda v: f'{v:,.0f}')} | "
            f"**{ratio:.2f}×** ({', '.join(f'{r:.2f}' for r in rounds_ratio)}) | {statistics.median(r['step_s']['median'] for r in ours):.3f} | "
            f"{statistics.median(r['step_s']['median'] for r in peer):.3f} | {statistics.median(o_rss):,.0f} MiB | "
            f"{statistics.median(p_rss):,.0f} MiB | **{rss_ratio:.2f}×** | {gflops:.0f} "
            f"({100 * gflops / torch_mm['gflop_per_s']:.0f}% of PyTorch's matmul peak) |"
        )
        verdicts.append(f"{memory}: training {ratio:.2f}× the peer (goal ≥ 1.5×: {'met' if ratio >= 1.5 else 'NOT met'}), "
                        f"peak RSS {rss_ratio:.2f}× (goal ≤ 0.5×: {'met' if rss_ratio <= 0.5 else 'NOT met'})")
    lines += ["", f"Model FLOPs: {ours_all[0]['flop_formula']} = {ours_all[0]['flop_per_token'] / 1e6:.1f} MFLOP per token.", ""]
    phased = [r for r in ours_all if "phases_s_median" in r]
    if phased:
        names = list(phased[0]["phases_s_median"])
        cells = " | ".join(f"{statistics.median(r['phases_s_median'][n] for r in phased):.3f}" for n in names)
        busy = statistics.median(r["cpu_seconds_per_wall_second_median"] for r in phased)
        faults = statistics.median(r["page_faults_per_step_median"] for r in phased)
        simd = ", ".join(phased[0]["cpu"]["simd"])
        lines += ["Where infini's step goes (median seconds over all rounds and both memory rules; CPU seconds per "
                  f"wall second {busy:.2f}, page faults per step {faults:,.0f}; SIMD: {simd}):", "",
                  "| " + " | ".join(names) + " |", "|" + "---|" * len(names), "| " + cells + " |", ""]

    if os.path.exists(f"{run}/eval.json"):
        ev = json.load(open(f"{run}/eval.json"))["eval"]
        peer_ev = {}
        for path in glob.glob(f"{run}/peer-eval-*.json"):
            try:
                r = json.load(open(path))
                peer_ev[r["length"]] = r
            except (OSError, ValueError, KeyError):
                pass  # the peer failed at this length (its log is beside it)
        lines += ["### Evaluation (one synthetic document per length, streamed segment by segment with the memory, "
                  "no gradients, fresh process each; memory `linear`)", "",
                  "| length | infini tokens/s | peer tokens/s | ratio | infini peak RSS | peer peak RSS | RSS ratio |",
                  "|---|---|---|---|---|---|---|"]
        for r in ev:
            p = peer_ev.get(r["length"])
            peer_cols = (f"{p['tokens_per_s']:,.0f} | **{r['tokens_per_s'] / p['tokens_per_s']:.2f}×** | "
                         if p else "failed (see its log) | | ")
            rss_cols = (f"{p['peak_rss_mib']:,.0f} MiB | **{r['peak_rss_mib'] / p['peak_rss_mib']:.2f}×**" if p else " | ")
            lines.append(f"| {r['length']:,} | {r['tokens_per_s']:,.0f} | {peer_cols}{r['peak_rss_mib']:,.1f} MiB | {rss_cols} |")
            if p:
                ratio = r["tokens_per_s"] / p["tokens_per_s"]
                verdicts.append(f"evaluation at {r['length']:,} tokens: {ratio:.2f}× the peer (goal ≥ 1.5×: "
                                f"{'met' if ratio >= 1.5 else 'NOT met'})")
        first, last = ev[0], ev[-1]
        speed = last["tokens_per_s"] / first["tokens_per_s"]
        rss = last["peak_rss_mib"] / first["peak_rss_mib"]
        verdicts.append(f"evaluation: {last['length']:,} tokens at {speed:.2f}× the speed of {first['length']:,} "
                        f"(goal ≥ 0.9×: {'met' if speed >= 0.9 else 'NOT met'}), peak RSS {rss:.3f}× "
                        f"(goal ≤ 1.05×: {'met' if rss <= 1.05 else 'NOT met'})")
        lines.append("")
    lines += ["### Goals", ""] + [f"- {v}" for v in verdicts]

    begin, end = markers(cpu_model())
    block = "\n".join([begin, f"### {cpu_model()}", "", *lines, end])
    if os.path.exists(target):
        text = open(target).read()
        if begin in text and end in text:
            text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
