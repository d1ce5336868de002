"""The colocated engine's token budget per forward (`max_num_batched_tokens`), kept inside what vLLM 0.26's start-up
dummy runs can address.

At start-up vLLM 0.26 runs dummy forwards of `max_num_batched_tokens` tokens (FlashInfer autotuning, kernel
warm-up) spread over at most `max_num_seqs` requests, without capping a request at `max_model_len`. When
`max_num_batched_tokens > max_num_seqs x max_model_len`, each dummy request claims more KV blocks than a row of the
block table holds, and the attention kernel reads past it: "CUDA error: an illegal memory access" in
`capture_model`/`empty_cache` (or in the warm-up with `enforce_eager`), with or without LoRA (vLLM issue #53658
describes the same overrun for cudagraph dummy runs). TRL always passes 4096, so a small run (8 sequences of 160
tokens: the GPU tests' LoRA and QLoRA runs) crashed. The default here is the largest budget that stays addressable;
a budget a recipe sets above it is a recipe error.
"""

from __future__ import annotations

TRL_BATCHED_TOKENS = 4096  # what TRL 1.16 passes to its colocated `vllm.LLM`


def batched_tokens_limit(max_num_seqs: int, max_model_len: int) -> int:
    """The largest `max_num_batched_tokens` vLLM 0.26's dummy runs can spread over `max_num_seqs` requests of at
    most `max_model_len` tokens."""
    return max_num_seqs * max_model_len


def batched_tokens_problem(requested: int | None, max_num_seqs: int, max_model_len: int | None) -> str | None:
    """Why a recipe's `vllm_engine_kwargs.max_num_batched_tokens` would crash the engine at start-up, or None."""
    if requested is None or max_model_len is None:
        return None
    limit = batched_tokens_limit(max_num_seqs, max_model_len)
    if requested <= limit:
        return None
    return (
        f"vllm_engine_kwargs.max_num_batched_tokens {requested} is more than max_num_seqs {max_num_seqs} x "
        f"max_model_len {max_model_len} = {limit}: vLLM 0.26's start-up dummy runs then overrun the block table "
        f"(illegal memory access); set it to at most {limit}, or leave it unset"
    )


def safe_engine_kwargs(kwargs: dict, user_set: bool) -> tuple[dict, str | None]:
    """`vllm.LLM` kwargs with `max_num_batched_tokens` lowered to what start-up can address (and why), unless the
    user set it (then a too-large value raises ValueError: `batched_tokens_problem`)."""
    seqs, length, tokens = (
        kwargs.get("max_num_seqs"),
        kwargs.get("max_model_len"),
        kwargs.get("max_num_batched_tokens"),
    )
    if seqs is None or length is None or tokens is None:
        return kwargs, None
    if user_set:
        problem = batched_tokens_problem(tokens, seqs, length)
        if problem:
            raise ValueError(problem)
        return kwargs, None
    limit = batched_tokens_limit(seqs, length)
    if tokens <= limit:
        return kwargs, None
    why = f"max_num_batched_tokens {tokens} -> {limit} (= max_num_seqs {seqs} x max_model_len {length})"
    return {**kwargs, "max_num_batched_tokens": limit}, why
