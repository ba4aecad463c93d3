"""The PyTorch side of scripts/bench-peers.sh (run in its venv).

  peer.py train --memory linear|delta --steps 5 --warmup 1   the peer, configs/bench.toml's model
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


def train(args):
    from infini_transformer_pytorch import InfiniTransformer, InfiniTransformerWrapper

    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
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
        use_mem_delta_rule=args.memory == "delta",
    )
    wrapper = InfiniTransformerWrapper(
        model,
        segment_length=m["segment_len"],
        detach_mems_every_num_segments=t["tbptt_segments"],
    )
    opt = torch.optim.AdamW(model.parameters(), lr=t.get("lr", 1e-3), weight_decay=t.get("weight_decay", 0.1))
    batch, seq_len = d["batch_size"], d["seq_len"]
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, m["vocab_size"], (batch, seq_len + 1), generator=gen)
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
    mm = sub.add_parser("matmul")
    mm.add_argument("--size", type=int, default=2048)
    mm.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = train(args) if args.command == "train" else matmul(args)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
