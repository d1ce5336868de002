"""The rows `open-grpo bench` compares.

`open_grpo` is the reference recipe (recipes/qwen-math-1.5b.yaml) as users run it, loaded through open_grpo's own
recipe loading with only the workload replaced (model, batch, lengths, steps, output, logging): a default that pays
goes into the recipe or ScriptArguments, and this row picks it up. `trl-default` is plain TRL: 1.16's `GRPOConfig`
defaults for all but the workload. The `open_grpo-<lever>` / `open_grpo+<lever>` rows switch one lever of the recipe
back to TRL's behaviour (or try one more), to measure each lever's own gain against `open_grpo` in the same file.

Every row trains the same workload the same way (on-policy, the same completions per step, the same loss) and
differs only in how fast, except rows marked `changes_loss`: those measure what a part of TRL's loss costs and are
never candidates for a default.
"""

from __future__ import annotations

REFERENCE_RECIPE = "qwen-math-1.5b"

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
    # candidates not (yet) in the recipe
    "open_grpo+flashinfer": {"kind": "recipe", "keys": {"vllm_engine_kwargs": {"attention_backend": "FLASHINFER"}}},
    "open_grpo+liger": {"kind": "recipe", "keys": {"use_liger_kernel": True}},
    "open_grpo+sleep": {"kind": "recipe", "keys": {"vllm_enable_sleep_mode": True, "vllm_sync_chunk_mib": 0}},
    # what TRL's vLLM importance-sampling correction costs (its old-logprob pass and vLLM's sampled-token logprobs)
    "open_grpo-iscorr": {
        "kind": "recipe",
        "keys": {"vllm_importance_sampling_correction": False},
        "changes_loss": True,
    },
    "hf-generate": {"kind": "trl", "keys": {"use_vllm": False}},
}
