"""The recipe hash a run and its checkpoints record: which keys make "the same run" (resume.py warns on a change)."""

from __future__ import annotations

import hashlib
import json

# Keys that may change while the same run continues (its length, cadence, where it reports), and the layout keys,
# which have their own check and message. Every other key the recipe sets is in the recipe hash.
NOT_HASHED = frozenset(
    {"max_steps", "num_train_epochs", "logging_steps", "logging_strategy", "logging_first_step", "logging_dir",
     "save_steps", "save_strategy", "save_total_limit", "save_only_model", "save_final_model", "report_to",
     "run_name", "log_completions", "num_completions_to_print", "disable_tqdm", "log_level", "eval_steps",
     "eval_strategy", "output_dir", "resume", "resume_from_checkpoint", "push_to_hub", "hub_model_id",
     "per_device_train_batch_size", "gradient_accumulation_steps", "vllm_tensor_parallel_size"}
)  # fmt: skip


def recipe_hash(cfg) -> str:
    """A hash of the values of every key the recipe file and the overrides set (`cfg.given`), less `NOT_HASHED`."""
    values = {}
    for key in sorted(set(cfg.given) - NOT_HASHED):
        owner = next((obj for obj in (cfg.script, cfg.training, cfg.model) if hasattr(obj, key)), None)
        if owner is not None:
            values[key] = getattr(owner, key)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]
