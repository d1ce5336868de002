"""The rows `open-grpo bench` compares: plain TRL defaults against open_grpo's defaults, and candidate variants.

Every row trains the same workload the same way (on-policy: one generation per optimizer step, the same completions
per step, the same loss); rows differ only in how fast they get there.
"""

from __future__ import annotations

# What open_grpo does differently from TRL's defaults, and becomes the recipes' and the trainer's defaults once a
# benchmark shows it pays (docs/PERFORMANCE.md has the numbers).
OPEN_GRPO = {
    "trainer": "open_grpo",
    # Gradient checkpointing stays on (TRL's default): turning it off saved ~0.1 s/step of training on an H200 but
    # doubled peak memory (56 -> 110 GiB), which an 80 GB card cannot hold next to vLLM's share.
    # TRL decodes completion ids itself; flat logprobs are the same values without per-token Python dicts
    "generation_kwargs": {"detokenize": False, "flat_logprobs": True},
    "vllm_sync_chunk_mib": 1024,  # push weights to vLLM in 1 GiB batches, not one call per parameter
}

ROWS: dict[str, dict] = {
    # Plain TRL GRPOTrainer: TRL 1.16's GRPOConfig defaults (gradient checkpointing on) for all but the workload.
    "trl-default": {"trainer": "trl"},
    "hf-generate": {"trainer": "trl", "use_vllm": False},
    "colocate-sleep": {"trainer": "trl", "vllm_enable_sleep_mode": True},
    "open_grpo": OPEN_GRPO,
    # one change at a time, to attribute the gain
    "no-gc": {"trainer": "trl", "gradient_checkpointing": False},
    "no-detok": {"trainer": "trl", "generation_kwargs": {"detokenize": False}},
    "batched-sync": {"trainer": "open_grpo", "vllm_sync_chunk_mib": 1024},
    "open_grpo-nogc": {**OPEN_GRPO, "gradient_checkpointing": False},
    "flat-logprobs": {"trainer": "trl", "generation_kwargs": {"flat_logprobs": True}},
    "open_grpo+liger": {**OPEN_GRPO, "use_liger_kernel": True},
    "open_grpo+mem0.5": {**OPEN_GRPO, "vllm_gpu_memory_utilization": 0.5},
    "open_grpo+eager": {**OPEN_GRPO, "vllm_engine_kwargs": {"enforce_eager": True}},
}
