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

from open_grpo.recipe.rules_training import batched_tokens_limit, batched_tokens_problem

TRL_BATCHED_TOKENS = 4096  # what TRL 1.16 passes to its colocated `vllm.LLM`


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
