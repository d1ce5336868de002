"""How TRL 1.16's colocated engine (`VLLMGeneration`) samples: what vLLM returns per decode step, and when Python's
garbage collector may run. These act on the trainer's process, where the colocated engine's output processing runs
(TRL's external launcher keeps vLLM's engine in-process), once per decode step for every sequence.

- `detokenize` / `flat_logprobs` (vLLM `SamplingParams`): TRL decodes completion ids itself and never reads vLLM's
  text, so incremental detokenization (and decoding each logprob's token) is wasted host work; flat logprobs are the
  same values in a few flat lists instead of one dict + `Logprob` object per token.
- sampled-token logprobs: TRL asks vLLM for them (`logprobs=0`) on every call, but its loss reads them only for the
  vLLM importance-sampling correction and the off-policy mask. With both off, `sampling_logprobs: auto` asks for none
  (no logprob kernels, no per-token host work) and hands TRL NaN placeholders it never reads: loss and gradients are
  unchanged (tests/test_engine_generation.py).
- garbage collection paused while the engine generates: a full collection walks every object of the trainer's
  process (model, optimizer, data) and stalls the decode loop; objects made during generation are freed by reference
  counting, and any cycles are collected once generation returns.
"""

from __future__ import annotations

import functools
import gc


def sampling_logprobs_read(args) -> bool:
    """Whether TRL 1.16's loss or metrics read vLLM's sampled-token logprobs for this config."""
    return bool(args.vllm_importance_sampling_correction) or args.off_policy_mask_threshold is not None


def sampling_params_merged(generation_kwargs: dict | None, detokenize: bool, flat_logprobs: bool) -> dict:
    """TRL's `generation_kwargs` for the colocated engine with our output settings under them (the user's win)."""
    return {"detokenize": detokenize, "flat_logprobs": flat_logprobs, **(generation_kwargs or {})}


def without_sampling_logprobs(generate):
    """Wrap `VLLMGeneration.generate` (called with `logprobs=None`) to hand TRL one NaN logprob per token."""

    @functools.wraps(generate)
    def run(*args, **kwargs):
        prompt_ids, completion_ids, logprobs, logprob_token_ids = generate(*args, **kwargs)
        if logprobs is None:
            logprobs = [[[None]] * len(ids) for ids in completion_ids]  # TRL maps None to NaN
            logprob_token_ids = [[[t] for t in ids] for ids in completion_ids]
        return prompt_ids, completion_ids, logprobs, logprob_token_ids

    return run


def gc_paused(fn):
    """`fn` with Python's garbage collector off while it runs (restored to its previous state after)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return run


def apply(gen, args) -> list[str]:
    """Set the colocated engine's sampling options from `args` (OpenGRPOConfig: vllm_detokenize, vllm_flat_logprobs,
    vllm_sampling_logprobs, pause_gc_in_generation); returns what changed from TRL's behaviour, one line each."""
    if gen.mode != "colocate":
        return []
    detokenize, flat_logprobs = args.vllm_detokenize, args.vllm_flat_logprobs
    changed = []
    if not detokenize or flat_logprobs:
        gen.generation_kwargs = sampling_params_merged(gen.generation_kwargs, detokenize, flat_logprobs)
        changed.append(
            f"detokenize={gen.generation_kwargs['detokenize']}, flat_logprobs={gen.generation_kwargs['flat_logprobs']}"
        )
    if args.vllm_sampling_logprobs == "auto" and not sampling_logprobs_read(args):
        gen.logprobs = None
        gen.generate = without_sampling_logprobs(gen.generate)
        changed.append("no sampled-token logprobs (neither the IS correction nor the off-policy mask reads them)")
    if args.pause_gc_in_generation:
        gen.generate = gc_paused(gen.generate)
        changed.append("garbage collection paused during generation")
    return changed
