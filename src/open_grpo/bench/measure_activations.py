"""Bytes that one Qwen2 decoder layer saves for backward per token, in bf16 with sdpa attention: the source of
memory_plan.ACTIVATION_BYTES_PER_HIDDEN and ACTIVATION_BYTES_PER_INTERMEDIATE. CPU is enough, no download.

    python -m open_grpo.bench.measure_activations            # Qwen2.5 0.5B, 1.5B and 7B layer shapes, and a fit

Counts the storages handed to torch.autograd.graph.saved_tensors_hooks during a forward (each storage once,
parameters excluded) for models of 1 and 2 layers; the difference is one layer. Fits bytes per token =
a x hidden + b x intermediate over the shapes.
"""

from __future__ import annotations

import argparse

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = {  # hidden, intermediate, heads, kv heads (Qwen2.5 0.5B, 1.5B, 7B; 1.5B with a narrower MLP for the fit)
    "0.5b": (896, 4864, 14, 2),
    "1.5b": (1536, 8960, 12, 2),
    "1.5b-mlp4608": (1536, 4608, 12, 2),
    "7b": (3584, 18944, 28, 4),
}


def saved_bytes(layers: int, shape, tokens: int) -> int:
    hidden, inter, heads, kv = shape
    config = Qwen2Config(hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
                         num_key_value_heads=kv, num_hidden_layers=layers, vocab_size=1024,
                         attn_implementation="sdpa")  # fmt: skip
    model = Qwen2ForCausalLM(config).to(torch.bfloat16).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    ids = torch.randint(0, 1024, (2, tokens // 2))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model(input_ids=ids, use_cache=False)
    return sum(seen.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=2048)
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, shape in SHAPES.items():
        per_token = (saved_bytes(2, shape, args.tokens) - saved_bytes(1, shape, args.tokens)) / args.tokens
        rows.append((shape[0], shape[1], per_token))
        print(f"{name:<14} hidden {shape[0]:>5} intermediate {shape[1]:>6}: {per_token:>9.0f} bytes/token/layer")
    (h1, i1, b1), (_, i2, b2) = rows[1], rows[2]  # same hidden size, different MLP width
    per_intermediate = (b1 - b2) / (i1 - i2)
    per_hidden = (b1 - per_intermediate * i1) / h1
    print(f"fit: {per_hidden:.1f} x hidden + {per_intermediate:.1f} x intermediate bytes per token per layer")


if __name__ == "__main__":
    main()
