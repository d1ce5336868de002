"""vLLM's memory sized to the work (`vllm_kv_cache: auto`) instead of a fraction of the card.

A colocated engine never holds more sequences at once than its `max_num_seqs` (TRL sets it to the generation batch:
per_device_train_batch_size x TP x steps_per_generation), each at most `max_model_len` tokens (prompt + completion
limits). Its KV cache needs no more than

    kv_cache_memory_bytes = sequences x max_model_len x KV bytes per token x KV_MARGIN
    KV bytes per token    = layers x 2 (K and V) x KV heads on this TP rank x head size x bytes of the cache dtype

The margin covers vLLM's block granularity (16 tokens per block and sequence), its reserved null block, and a few
blocks of slack. With it vLLM never preempts for lack of cache in the generation batch. vLLM 0.26 takes
`kv_cache_memory_bytes` as given and skips its memory profiling for the cache (v1/worker/gpu_worker.py
`determine_available_memory`); `gpu_memory_utilization` then only gates start-up (free memory must be at least that
share of the card: v1/worker/utils.py `request_memory`), so it is set to the planned share below. vLLM's other
memory (weights, activations of its profile run, CUDA graphs) is whatever it needs; the plan counts it as the
weights plus VLLM_OVERHEAD_GIB, an estimate that `open-grpo bench` holds against measured peaks.

`fraction` keeps TRL's behaviour: vLLM profiles and takes `vllm_gpu_memory_utilization` of the card.
For the 1.5B recipe (16 sequences of 1,536 tokens, 28 KiB per token) the cache is 0.8 GiB; the fraction on an
H200 is 42 GiB.
"""

from __future__ import annotations

import math

GIB = 2**30
MIB = 2**20
KV_MARGIN = 1.2
KV_DTYPE_BYTES = 2  # bf16/fp16 cache: vLLM's `kv_cache_dtype: auto` follows the model's 16-bit dtype
VLLM_OVERHEAD_GIB = 1.5  # vLLM's activations, CUDA graphs and allocator slack beside weights and KV (an estimate)
MAX_UTILIZATION = 0.95


def kv_bytes_per_token(shape, tp: int = 1, dtype_bytes: int = KV_DTYPE_BYTES) -> int:
    """K and V of every layer for one token on one TP rank (KV heads split across ranks, at least one each)."""
    kv_heads = max(1, shape.num_key_value_heads // tp)
    return 2 * shape.num_hidden_layers * kv_heads * shape.head_size * dtype_bytes


def kv_cache_bytes(shape, sequences: int, max_model_len: int, tp: int = 1) -> int:
    """`kv_cache_memory_bytes` for `sequences` of up to `max_model_len` tokens, with the margin, in whole MiB."""
    need = sequences * max_model_len * kv_bytes_per_token(shape, tp) * KV_MARGIN
    return math.ceil(need / MIB) * MIB


def engine_share_bytes(weight_bytes: float, kv_bytes: float) -> float:
    """What the plan books for a colocated engine sized to the work: weights, KV cache, vLLM's overhead."""
    return weight_bytes + kv_bytes + VLLM_OVERHEAD_GIB * GIB


def engine_kwargs(shape, *, sequences: int, max_model_len: int, tp: int, card_bytes: float | None) -> dict:
    """The `vllm.LLM` arguments for `vllm_kv_cache: auto`: the cache size, and the start-up memory gate set to the
    planned share of the card (left as it is where the card is unknown)."""
    kv = kv_cache_bytes(shape, sequences, max_model_len, tp)
    out = {"kv_cache_memory_bytes": kv}
    if card_bytes:
        share = engine_share_bytes(2 * shape.num_params / tp, kv)
        out["gpu_memory_utilization"] = round(min(MAX_UTILIZATION, share / card_bytes), 4)
    return out


def sized_engine_kwargs(llm_kwargs: dict, card_bytes: float | None) -> tuple[dict, str]:
    """For the arguments TRL builds its colocated engine with (model path, max_num_seqs, max_model_len, TP):
    (the arguments `vllm_kv_cache: auto` adds, why). Empty where it cannot size: the engine keeps the fraction."""
    from open_grpo.planning.model_shapes import find_shape

    if "kv_cache_memory_bytes" in llm_kwargs:
        return {}, "vllm_kv_cache auto: kv_cache_memory_bytes given in vllm_engine_kwargs, kept"
    max_len, seqs = llm_kwargs.get("max_model_len"), llm_kwargs.get("max_num_seqs")
    if not max_len or not seqs:
        return {}, (
            "vllm_kv_cache auto: no max_model_len (set max_prompt_tokens or vllm_max_model_length) or max_num_seqs; "
            "vLLM takes vllm_gpu_memory_utilization of the card"
        )
    shape, where = find_shape(str(llm_kwargs.get("model", "")))
    if shape is None:
        return {}, f"vllm_kv_cache auto: no model shape ({where}); vLLM takes vllm_gpu_memory_utilization of the card"
    tp = int(llm_kwargs.get("tensor_parallel_size") or 1)
    out = engine_kwargs(shape, sequences=seqs, max_model_len=max_len, tp=tp, card_bytes=card_bytes)
    why = (
        f"vllm_kv_cache auto: KV cache {out['kv_cache_memory_bytes'] / GIB:.2f} GiB for {seqs} sequences x "
        f"{max_len} tokens x {kv_bytes_per_token(shape, tp):,} bytes per token x {KV_MARGIN}"
    )
    return out, why
