"""Rules of the model and reward keys: the model id, remote code, LoRA / QLoRA (PEFT's and TRL's refusals, the target
modules matched against the model's module names), and the reward specs (the registry's own parse)."""

from __future__ import annotations

from open_grpo.errors import RecipeError
from open_grpo.planning.model_shapes import find_shape, random_model_problem
from open_grpo.recipe.lora_targets import target_problems
from open_grpo.recipe.schema import read_snapshot
from open_grpo.rewards.registry import RewardSpecError, parse_reward_specs

# ModelConfig keys that only mean something with `use_peft: true` (TRL ignores them otherwise, silently).
PEFT_KEYS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters", "lora_modules_to_save",
    "lora_task_type", "use_rslora", "use_dora", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type",
    "use_bnb_nested_quant", "bnb_4bit_quant_storage",
)  # fmt: skip


def model_id_problems(model, training, failed=frozenset()) -> list[str]:
    problems = []
    if not model.model_name_or_path and "model_name_or_path" not in failed:
        problems.append("'model_name_or_path' is required")
    elif random_model_problem(model.model_name_or_path):
        problems.append(random_model_problem(model.model_name_or_path))
    if training.trust_remote_code and model.model_revision in (None, "main"):
        problems.append(
            "'trust_remote_code: true' runs code from the model repository: pin it with 'model_revision: <commit sha>'"
        )
    return problems


def lora_problems(model, training, model_defaults: dict) -> list[str]:
    """PEFT and quantization keys: set without `use_peft`, out of range, or a combination TRL or vLLM refuses."""
    problems = []
    if model.load_in_4bit and model.load_in_8bit:
        problems.append("'load_in_4bit' and 'load_in_8bit' are both true (TRL refuses it): pick one")
    if not model.use_peft:
        for key in PEFT_KEYS:
            value = getattr(model, key)
            if value != model_defaults[key]:
                problems.append(
                    f"'{key}: {value}' is set but 'use_peft' is false, so it would be ignored and the full model "
                    f"trained: set 'use_peft: true' to train a LoRA adapter, or remove '{key}'"
                )
        return problems
    if model.lora_r < 1:
        problems.append(f"'lora_r' must be a positive rank, got {model.lora_r}")
    if model.lora_alpha <= 0:
        problems.append(f"'lora_alpha' must be positive (the adapter is scaled by alpha / r), got {model.lora_alpha}")
    if not 0 <= model.lora_dropout < 1:
        problems.append(f"'lora_dropout' must be in [0, 1), got {model.lora_dropout}")
    if model.load_in_8bit and training.use_vllm:
        problems.append(
            "'load_in_8bit' with 'use_vllm: true': vLLM cannot load a base model in 8-bit; use 'load_in_4bit' (QLoRA) "
            "or 'use_vllm: false'"
        )
    return problems


def lora_target_problems(model) -> list[str]:
    """The target modules against the model's module names (from its config; skipped for a model not found)."""
    if not model.use_peft or not model.model_name_or_path or random_model_problem(model.model_name_or_path):
        return []
    try:
        shape, _ = find_shape(model.model_name_or_path, model.model_revision)
    except RecipeError as e:
        return e.problems
    if shape is None:
        return []
    default = read_snapshot()["peft_default_targets"].get(shape.model_type)
    return target_problems(shape, model.lora_target_modules, default, model.lora_modules_to_save,
                           model.lora_target_parameters)  # fmt: skip


def reward_problems(script, training) -> list[str]:
    try:
        parse_reward_specs(script.rewards, script.reward_funcs, training.reward_weights)
    except RewardSpecError as e:
        return e.problems
    return []


def model_problems(model, training, model_defaults: dict, failed=frozenset()) -> list[str]:
    """`failed`: keys whose value was wrong (already said)."""
    problems = model_id_problems(model, training, failed) + lora_problems(model, training, model_defaults)
    return problems + lora_target_problems(model)
