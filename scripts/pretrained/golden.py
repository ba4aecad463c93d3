"""Golden values of a pretrained GGUF model from an independent implementation: PyPI's
`transformers`, reading the GGUF file itself (its own dequantizer, its own tokenizer
conversion), so that an error in scripts/pretrained/gguf_to_hf.py or in `infini import` shows.

Usage: python golden.py MODEL.gguf OUT.json

Writes, for each text: the token ids, the mean next-token NLL over the text (and its perplexity),
the top-5 next tokens after the last one, and the greedy continuation of 20 tokens. The Rust test
crates/infini-train/tests/pretrained.rs compares `infini import` of the converted folder with it.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

# Our own sentences (no third-party text), all shorter than one segment.
TEXTS = [
    "The capital of France is",
    "Once upon a time, there was a little girl who lived in a small house at the edge of a forest. Every morning she walked to the river to fetch water, and every evening she told her grandmother what she had seen.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "In 1969, 3 astronauts flew 384,400 km to the Moon; 2 of them walked on its surface for about 21 hours.",
]


def main(path, out):
    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    cases = []
    with torch.no_grad():
        for text in TEXTS:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids])
            logits = model(x).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            nll = -logp[:-1].gather(1, x[0, 1:].unsqueeze(1)).squeeze(1)
            top = torch.topk(logp[-1], 5)
            greedy = model.generate(x, max_new_tokens=20, do_sample=False)[0, len(ids):].tolist()
            cases.append({
                "text": text,
                "ids": ids,
                "mean_nll": float(nll.mean()) if len(nll) else None,
                "perplexity": float(torch.exp(nll.mean())) if len(nll) else None,
                "top5_ids": top.indices.tolist(),
                "top5_logp": [float(v) for v in top.values],
                "greedy_ids": greedy,
                "greedy_text": tok.decode(greedy),
            })
    result = {
        "source": name,
        "implementation": f"transformers {transformers.__version__}, torch {torch.__version__}, float32",
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    for c in cases:
        print(f"{len(c['ids']):4d} tokens  ppl {c['perplexity']}  greedy {c['greedy_text']!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
