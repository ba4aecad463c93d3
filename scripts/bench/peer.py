"""The PyTorch side of scripts/bench-peers.sh (run in its venv).

  peer.py train --memory linear|delta --steps 5 --warmup 1   the peer, configs/bench.toml's model
  peer.py eval --memory linear --length 65536                 the peer's evaluation of one document
  peer.py matmul                                              PyTorch's f32 matmul GFLOP/s here

Prints one JSON object. The peer is lucidrains' infini-transformer-pytorch, used as published.
"""
import argparse
import json
import resource
import statistics
import sys
import time
import tomllib

import torch


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def build(config_path, memory):
    """The peer model of a run config, and its segment-by-segment wrapper."""
    from infini_transformer_pytorch import InfiniTransformer, InfiniTransformerWrapper

    with open(config_path, "rb") as f:
        cfg = tomllib.load(f)
    m, t = cfg["model"], cfg["train"]
    dim, hidden = m["d_model"], m["ffn_hidden"]
    # The peer's GEGLU hidden size is int(ff_mult · dim · 2/3): choose ff_mult to match ours.
    ff_mult = hidden * 3 / (2 * dim)
    assert int(ff_mult * dim * 2 / 3) == hidden, "no ff_mult gives this FFN hidden size"
    torch.manual_seed(0)
    model = InfiniTransformer(
        num_tokens=m["vocab_size"],
        dim=dim,
        depth=m["n_layers"],
        dim_head=m.get("head_dim", dim // m["n_heads"]),
        heads=m["n_heads"],
        ff_mult=ff_mult,
        use_mem_delta_rule=memory == "delta",
    )
    wrapper = InfiniTransformerWrapper(
        model,
        segment_length=m["segment_len"],
        detach_mems_every_num_segments=t["tbptt_segments"],
    )
    return cfg, model, wrapper


def train(args):
    cfg, model, wrapper = build(args.config, args.memory)
    d, t = cfg["data"], cfg["train"]
    opt = torch.optim.AdamW(model.parameters(), lr=t.get("lr", 1e-3), weight_decay=t.get("weight_decay", 0.1))
    batch, seq_len = d["batch_size"], d["seq_len"]
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, cfg["model"]["vocab_size"], (batch, seq_len + 1), generator=gen)
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = wrapper(seq, backward=True)
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.get("grad_clip", 1.0))
        opt.step()
        opt.zero_grad()
        elapsed = time.perf_counter() - start
        losses.append(float(loss))
        if step >= args.warmup:
            times.append(elapsed)
    tokens = batch * seq_len
    med = statistics.median(times)
    return {
        "peer": "infini-transformer-pytorch",
        "memory": args.memory,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_step": tokens,
        "step_s": {"min": min(times), "median": med, "max": max(times), "all": times},
        "tokens_per_s": {"min": tokens / max(times), "median": tokens / med, "max": tokens / min(times)},
        "peak_rss_mib": peak_rss_mib(),
        "losses": losses,
    }


def parse_length(text):
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1], 1)
    return int(text.rstrip("KM")) * scale


def evaluate(args):
    """One synthetic document of `length` tokens through the peer's wrapper without gradients:
    segment by segment with the memory carried, the loss over every token (as `infini bench
    eval`). The first segment is run once before timing (warm-up)."""
    cfg, model, wrapper = build(args.config, args.memory)
    model.eval()
    n = parse_length(args.length)
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, cfg["model"]["vocab_size"], (1, n + 1), generator=gen)
    rss_before = peak_rss_mib()
    with torch.no_grad():
        wrapper(seq[:, : cfg["model"]["segment_len"] + 1])
        start = time.perf_counter()
        loss = wrapper(seq)
        seconds = time.perf_counter() - start
    return {
        "peer": "infini-transformer-pytorch",
        "memory": args.memory,
        "torch": torch.__version__,
        "length": n,
        "tokens": n,
        "seconds": seconds,
        "tokens_per_s": n / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_eval_mib": rss_before,
        "loss": float(loss),
    }


def matmul(args):
    n = args.size
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"size": n, "threads": torch.get_num_threads(), "gflop_per_s": 2 * n**3 / min(times) / 1e9}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--config", default="configs/bench.toml")
    t.add_argument("--memory", choices=["linear", "delta"], default="linear")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--warmup", type=int, default=1)
    e = sub.add_parser("eval")
    e.add_argument("--config", default="configs/bench.toml")
    e.add_argument("--memory", choices=["linear", "delta"], default="linear")
    e.add_argument("--length", default="8K")
    mm = sub.add_parser("matmul")
    mm.add_argument("--size", type=int, default=2048)
    mm.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {"train": train, "eval": evaluate, "matmul": matmul}[args.command](args)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
