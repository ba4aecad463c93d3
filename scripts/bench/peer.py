"""The PyTorch side of scripts/bench-peers.sh (run in its venv).

  peer.py train --memory linear|delta --steps 5 --warmup 1   the peer, configs/bench.toml's model
  peer.py eval --memory linear --length 65536                 the peer's evaluation of one document
  peer.py matmul                                              PyTorch's f32 matmul GFLOP/s here
  peer.py --device cuda train --config configs/paper-pg19.toml --precision bf16
                                                              the same on a GPU, bf16 autocast

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

DEVICE = "cpu"


def sync():
    """Waits for the device, so that a host clock read after it covers the device's work."""
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def peak_device_mib():
    return torch.cuda.max_memory_allocated() / 2**20 if DEVICE.startswith("cuda") else None


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
    # Our tbptt_segments = 0 means backprop through the whole example.
    segments = max(1, cfg["data"]["seq_len"] // m["segment_len"])
    wrapper = InfiniTransformerWrapper(
        model,
        segment_length=m["segment_len"],
        detach_mems_every_num_segments=t["tbptt_segments"] or segments,
    )
    model.to(DEVICE)
    return cfg, model, wrapper


def train(args):
    cfg, model, wrapper = build(args.config, args.memory)
    d, t = cfg["data"], cfg["train"]
    lr, wd = t.get("lr", 1e-3), t.get("weight_decay", 0.1)
    if t.get("optimizer") == "adafactor" and hasattr(torch.optim, "Adafactor"):
        opt = torch.optim.Adafactor(model.parameters(), lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    batch, seq_len = d["batch_size"], d["seq_len"]
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, cfg["model"]["vocab_size"], (batch, seq_len + 1), generator=gen).to(DEVICE)
    # bf16: autocast of the matrix products, weights and optimizer in f32 (as ours).
    amp = torch.autocast(device_type=DEVICE.split(":")[0], dtype=torch.bfloat16, enabled=args.precision == "bf16")
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        sync()
        start = time.perf_counter()
        with amp:
            loss = wrapper(seq, backward=True)
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.get("grad_clip", 1.0))
        opt.step()
        opt.zero_grad()
        sync()
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
        "device": torch.cuda.get_device_name() if DEVICE.startswith("cuda") else "cpu",
        "precision": args.precision,
        "optimizer": type(opt).__name__,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_per_step": tokens,
        "step_s": {"min": min(times), "median": med, "max": max(times), "all": times},
        "tokens_per_s": {"min": tokens / max(times), "median": tokens / med, "max": tokens / min(times)},
        "peak_rss_mib": peak_rss_mib(),
        "peak_device_mib": peak_device_mib(),
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
    seq = torch.randint(0, cfg["model"]["vocab_size"], (1, n + 1), generator=gen).to(DEVICE)
    rss_before = peak_rss_mib()
    with torch.no_grad():
        wrapper(seq[:, : cfg["model"]["segment_len"] + 1])
        sync()
        start = time.perf_counter()
        loss = wrapper(seq)
        sync()
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
    p.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--config", default="configs/bench.toml")
    t.add_argument("--memory", choices=["linear", "delta"], default="linear")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    e = sub.add_parser("eval")
    e.add_argument("--config", default="configs/bench.toml")
    e.add_argument("--memory", choices=["linear", "delta"], default="linear")
    e.add_argument("--length", default="8K")
    mm = sub.add_parser("matmul")
    mm.add_argument("--size", type=int, default=2048)
    mm.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(args.threads)
    result = {"train": train, "eval": evaluate, "matmul": matmul}[args.command](args)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
