"""The rows `open-grpo bench` compares.

`open_grpo` is the reference recipe (recipes/qwen-math-1.5b.yaml) as users run it, loaded through open_grpo's own
recipe loading with only the workload replaced (model, batch, lengths, steps, output, logging): a default that pays
goes into the recipe or ScriptArguments, and this row picks it up. `trl-default` is plain TRL: 1.16's `GRPOConfig`
defaults for all but the workload. The `open_grpo-<lever>` / `open_grpo+<lever>` rows switch one lever of the recipe
back to TRL's behaviour (or try one more), to measure each lever's own gain against `open_grpo` in the same file.

Every row trains the same workload the same way (on-policy, the same completions per step, the same loss) and
differs only in how fast, except rows marked `changes_loss`: those measure what a part of TRL's loss costs and are
never candidates for a default; and rows marked `off_policy`: they generate for several optimizer steps at once
(`steps_per_generation`), so most steps train on completions of older weights (with TRL's importance-sampling
correction), and they are reported apart, never in the on-policy headline.
"""

from __future__ import annotations

REFERENCE_RECIPE = "qwen-math-1.5b"
AHEAD_STEPS = 4  # the off-policy row: one engine call for this many optimizer steps

# kind "trl": GRPOConfig keys over TRL's defaults; kind "recipe": recipe keys over the reference recipe's values.
ROWS: dict[str, dict] = {
    "trl-default": {"kind": "trl", "keys": {}},
    "open_grpo": {"kind": "recipe", "keys": {}},
    # each lever of the recipe, switched back to TRL's behaviour
    "open_grpo-fold": {"kind": "recipe", "keys": {"fold_old_logprobs": False}},
    "open_grpo+ckpt": {"kind": "recipe", "keys": {"gradient_checkpointing": True}},
    "open_grpo-gcpause": {"kind": "recipe", "keys": {"pause_gc_in_generation": False}},
    "open_grpo-outputs": {"kind": "recipe", "keys": {"vllm_detokenize": True, "vllm_flat_logprobs": False}},
    "open_grpo-chunksync": {"kind": "recipe", "keys": {"vllm_sync_chunk_mib": 0}},
    "open_grpo-kvauto": {"kind": "recipe", "keys": {"vllm_kv_cache": "fraction"}},
    # candidates not (yet) in the recipe
    "open_grpo+flashinfer": {"kind": "recipe", "keys": {"vllm_engine_kwargs": {"attention_backend": "FLASHINFER"}}},
    "open_grpo+liger": {"kind": "recipe", "keys": {"use_liger_kernel": True}},  # layer kernels; the fold stays
    "open_grpo+own_process": {"kind": "recipe", "keys": {"vllm_engine_process": "own_process"}},
    "open_grpo+sleep": {"kind": "recipe", "keys": {"vllm_enable_sleep_mode": True, "vllm_sync_chunk_mib": 0}},
    # what TRL's vLLM importance-sampling correction costs (its old-logprob pass and vLLM's sampled-token logprobs)
    "open_grpo-iscorr": {
        "kind": "recipe",
        "keys": {"vllm_importance_sampling_correction": False},
        "changes_loss": True,
    },
    "hf-generate": {"kind": "trl", "keys": {"use_vllm": False}},
    # off-policy by design: generate ahead for AHEAD_STEPS optimizer steps, IS correction on (TRL's default)
    "open_grpo-ahead": {
        "kind": "recipe",
        "keys": {"steps_per_generation": AHEAD_STEPS, "vllm_importance_sampling_correction": True},
        "off_policy": True,
    },
}


def steps_per_cycle(name: str) -> int:
    """Optimizer steps per engine call of a row (the recipe trains one micro-batch per optimizer step): its steps
    are measured in whole cycles."""
    keys = ROWS[name]["keys"]
    return keys.get("steps_per_generation", 1) * keys.get("num_iterations", 1)
