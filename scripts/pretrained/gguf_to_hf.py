"""Convert a Llama-architecture GGUF file (llama.cpp's format) to the Hugging Face layout:
config.json, model.safetensors (f32, dequantized) and tokenizer.json.

Usage: python gguf_to_hf.py MODEL.gguf OUT_DIR

Needs the PyPI packages gguf (llama.cpp's own reader), numpy and safetensors. Two things differ
from the Hugging Face layout and are undone here:
  * llama.cpp's converter permutes the rows of the Q and K projections (within each head, from
    the half-split RoPE layout of Hugging Face Llama to its interleaved one);
  * GGUF lists tensor dimensions innermost first, so a [out, in] matrix is stored as [in, out].
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize
from safetensors.numpy import save_file


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def unpermute(w, n_head):
    """Inverse of llama.cpp's `permute` (convert_hf_to_gguf.py) for a [n_head*d, in] matrix.

    llama.cpp views each head's d rows as [2, d/2] and transposes them to [d/2, 2] (row a·d/2 + b
    moves to b·2 + a); this views them as [d/2, 2] and transposes back."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(name):
    if name in GLOBAL:
        return GLOBAL[name]
    parts = name.split(".", 2)
    if parts[0] == "blk" and parts[2] in LAYER:
        return f"model.layers.{parts[1]}.{LAYER[parts[2]]}"
    raise SystemExit(f"error: tensor {name} has no Hugging Face Llama name (not a Llama GGUF?)")


def tokenizer_json(reader):
    if field(reader, "tokenizer.ggml.model") != "gpt2":
        raise SystemExit("error: only byte-level BPE (tokenizer.ggml.model = gpt2) tokenizers are converted")
    pre = field(reader, "tokenizer.ggml.pre")
    # llama.cpp's pre-tokenizers, as Hugging Face pre_tokenizer sequences.
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre == "smollm":
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    elif pre in ("gpt-2", "default"):
        pre_tokenizer = byte_level
    else:
        raise SystemExit(f"error: tokenizer.ggml.pre = {pre!r} is not one this converter knows (smollm, gpt-2)")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    control = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, (t, ty) in enumerate(zip(tokens, types))
        if ty == control
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": list(merges),
        },
    }


def main(path, out):
    reader = GGUFReader(path)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"error: general.architecture is {arch!r}; only llama GGUF files are converted")
    n_head = int(field(reader, "llama.attention.head_count"))
    n_kv = int(field(reader, "llama.attention.head_count_kv", n_head))
    tensors = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)]) if len(t.shape) > 1 else w.reshape(-1)
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    vocab = len(field(reader, "tokenizer.ggml.tokens"))
    eps = float(np.float32(field(reader, "llama.attention.layer_norm_rms_epsilon")))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": int(field(reader, "llama.embedding_length")),
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(reader, "llama.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": int(field(reader, "llama.rope.dimension_count", int(field(reader, "llama.embedding_length")) // n_head)),
        "max_position_embeddings": int(field(reader, "llama.context_length")),
        "rms_norm_eps": float(f"{eps:.7g}"),
        "rope_theta": float(field(reader, "llama.rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "vocab_size": vocab,
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id", 0)),
        "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id", 0)),
        "torch_dtype": "float32",
        "converted_from": os.path.basename(path),
    }
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(reader), f, ensure_ascii=False)
    params = sum(int(np.prod(w.shape)) for w in tensors.values())
    print(f"converted {len(tensors)} tensors ({params / 1e6:.1f}M parameters), vocab {vocab} -> {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
