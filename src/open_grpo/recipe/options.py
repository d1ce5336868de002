"""open_grpo's training and engine options: the fields `OpenGRPOConfig` adds to TRL's `GRPOConfig`, declared once.

`OpenGRPOConfig(OpenGRPOOptions, GRPOConfig)` (grpo_config.py) is what the trainer reads (`self.args.<option>`);
this torch-free half is what recipes are checked against without importing TRL's trainer. Each field has its type,
its default (open_grpo's behaviour), its help and, where it has them, its `choices` and `trl_behaviour`: the value
that reproduces plain TRL (the benchmark's `trl-default` row sets them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

ALLREDUCE_FUSION_CHOICES = ("auto", "off", "trtllm", "vllm")
SAMPLING_LOGPROBS_CHOICES = ("auto", "always")
MEMORY_CHECK_CHOICES = ("error", "warn")
ENGINE_PROCESS_CHOICES = ("auto", "in_process", "own_process")
KV_CACHE_CHOICES = ("auto", "fraction")


@dataclass
class OpenGRPOOptions:
    """What open_grpo's trainer adds to TRL's `GRPOConfig` (its other keys are TRL's and transformers')."""

    max_prompt_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Prompts longer than this many tokens (after the chat template) are dropped before training and "
            "the count is logged; it also sets vLLM's max_model_len (with max_completion_length) when "
            "'vllm_max_model_length' is unset, and the memory plan's prompt length. null keeps every prompt."
        },
    )
    vllm_engine_kwargs: dict | None = field(
        default=None,
        metadata={
            "help": "Options passed to the colocated vLLM engine (`vllm.LLM`) on top of TRL's, e.g. "
            "{max_num_seqs: 64, enable_prefix_caching: true}.",
            "example": "{max_num_seqs: 64}",
        },
    )
    vllm_sync_chunk_mib: int = field(
        default=1024,
        metadata={
            "help": "Colocate mode: push weights to vLLM in chunks of this many MiB (one load_weights call each) "
            "instead of one call per parameter. 0 keeps TRL's per-parameter path.",
            "trl_behaviour": 0,
        },
    )
    vllm_allreduce_fusion: str = field(
        default="auto",
        metadata={
            "help": "TP > 1, colocate: vLLM's fused all-reduce + RMSNorm. 'auto': off where NVLink multicast is off or "
            "missing (vLLM 0.26 crashes there otherwise), vLLM's choice elsewhere; 'off'; 'trtllm' (FlashInfer's IPC "
            "backend); 'vllm' (no change). See open_grpo/engine/allreduce.py.",
            "choices": ALLREDUCE_FUSION_CHOICES,
            "trl_behaviour": "vllm",
        },
    )
    vllm_engine_process: str = field(
        default="in_process",
        metadata={
            "help": "Colocate: where the vLLM engine core runs. 'in_process' (TRL's: in the training process); "
            "'own_process' (a process of its own on this rank's GPU, weights through a shared staging buffer; TP 1, "
            "no sleep mode, no 4/8-bit base); 'auto' (own_process where it applies). See "
            "open_grpo/engine/own_process.py.",
            "choices": ENGINE_PROCESS_CHOICES,
            "trl_behaviour": "in_process",
        },
    )
    vllm_kv_cache: str = field(
        default="auto",
        metadata={
            "help": "Colocate: vLLM's KV cache. 'auto' sizes it to one generation batch (max_num_seqs x max model "
            "length, with a margin) and sets vLLM's start-up share to weights + cache + overhead; 'fraction' lets vLLM "
            "take vllm_gpu_memory_utilization of the card (TRL's). See open_grpo/planning/kv_cache_plan.py.",
            "choices": KV_CACHE_CHOICES,
            "trl_behaviour": "fraction",
        },
    )
    vllm_engine_step_timeout_s: float = field(
        default=300.0,
        metadata={
            "help": "Colocate: an engine step (a few ms) that runs longer than this is logged with every thread's "
            "stack; an engine in its own process is then stopped with an error instead of hanging. 0: no watch."
        },
    )
    memory_check: str = field(
        default="error",
        metadata={
            "help": "What the preflight (open-grpo check, launch-args, the trainer at start-up) does with a memory plan "
            "over the card: 'error' stops; 'warn' only warns, for a plan you know to be pessimistic for your run.",
            "choices": MEMORY_CHECK_CHOICES,
        },
    )
    vllm_detokenize: bool = field(
        default=False,
        metadata={
            "help": "Colocate: let vLLM detokenize completions as it generates. TRL decodes the token ids itself and "
            "never reads vLLM's text, so off saves host work on every decode step.",
            "trl_behaviour": True,
        },
    )
    vllm_flat_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Colocate: vLLM returns the sampled-token logprobs as flat lists (the same values) instead of one "
            "dict and Logprob object per token: fewer Python objects per decode step.",
            "trl_behaviour": False,
        },
    )
    vllm_sampling_logprobs: str = field(
        default="auto",
        metadata={
            "help": "Colocate: 'auto' asks vLLM for the sampled-token logprobs only when the loss reads them (the vLLM "
            "importance-sampling correction or the off-policy mask); 'always' asks on every call, as TRL does.",
            "choices": SAMPLING_LOGPROBS_CHOICES,
            "trl_behaviour": "always",
        },
    )
    fold_old_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Skip TRL's separate no-grad forward for old logprobs when only the vLLM importance-sampling "
            "correction needs them and every completion is trained on within one optimizer step; the loss pass "
            "computes the same correction from its own logprobs (open_grpo/engine/folded_logprobs.py).",
            "trl_behaviour": False,
        },
    )
    pause_gc_in_generation: bool = field(
        default=True,
        metadata={
            "help": "Colocate: pause Python's garbage collector while vLLM generates (a full collection walks the "
            "whole trainer process and stalls the decode loop); it runs again once generation returns.",
            "trl_behaviour": False,
        },
    )
    gradient_checkpointing_auto: bool = field(
        default=False,
        init=False,
        metadata={"help": "Set by `gradient_checkpointing: auto` (decided at start-up from the memory plan)."},
    )
    completions_log_max_per_step: int | None = field(
        default=256,
        metadata={
            "help": "With 'log_completions: true': at most this many completions per logged step in "
            "<output_dir>/completions.jsonl (the first ones, whole prompt groups). null writes them all."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling: drop prompt groups whose completions all got the same reward and refill "
            "the batch with fresh prompts (open_grpo/trainer/dynamic_sampling.py)."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=3,
        metadata={
            "help": "Dynamic sampling: refill rounds per generation batch at most; then the batch is completed with "
            "zero-variance groups (advantage 0)."
        },
    )


def trl_behaviour() -> dict:
    """The option values that make open_grpo's trainer behave as plain TRL's (the benchmark's `trl-default` row)."""
    return {f.name: f.metadata["trl_behaviour"] for f in fields(OpenGRPOOptions) if "trl_behaviour" in f.metadata}
