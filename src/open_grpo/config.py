"""Recipes: one flat YAML file per run, parsed with TRL's `TrlParser` into three dataclasses and validated.

    ScriptArguments (open_grpo's keys, recipe_keys.py: data, prompts, rewards, vLLM engine options, features)
    trl.GRPOConfig   (TRL's training and generation options, by their TRL 1.16 names; grpo_config.py)
    trl.ModelConfig  (model id, revision, dtype, attention implementation, LoRA)

A recipe is given by name (`qwen-math-1.5b` -> `recipes/qwen-math-1.5b.yaml`) or by path. Every key must be a field
of one of the three; unknown keys and wrong types (recipe_types.py) and cross-field problems (`validate`) are
reported together, naming the file, before anything is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import activation_checkpointing, evaluation, lora, shipped
from .dynamic_sampling import check_config as check_dynamic_sampling
from .engine import process_choice
from .engine.allreduce import CHOICES as ALLREDUCE_CHOICES
from .engine.generation import SAMPLING_LOGPROBS
from .errors import RecipeError
from .kv_cache_plan import CHOICES as KV_CACHE_CHOICES
from .memory_plan import quantized_base
from .mixture import check_mixture
from .models import random_model_problem
from .recipe_keys import GENERATOR_PREFIX, MEMORY_CHECK_CHOICES, ScriptArguments
from .recipe_types import check_keys_and_types, check_override_keys, dataclass_types
from .resume import setting_problems as resume_setting_problems
from .rewards.registry import RewardSpecError, parse_reward_specs

__all__ = ["GENERATOR_PREFIX", "Recipe", "RecipeError", "ScriptArguments", "available_recipes", "load_recipe"]


def available_recipes() -> list[str]:
    return shipped.names(shipped.RECIPES)


def resolve_recipe(recipe: str | os.PathLike) -> Path:
    """A recipe name or path -> the YAML file. Unknown names list the available ones."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file {str(path)!r} not found")
        return path
    found = shipped.find(shipped.RECIPES, str(recipe))
    if found is None:
        raise RecipeError(shipped.unknown_name(shipped.RECIPES, str(recipe)))
    return found


def _recipe_parser(for_planning: bool = False):
    # TRL pulls in torch and transformers (seconds): imported when a recipe is parsed, not when the CLI starts
    from trl import TrlParser

    class RecipeParser(TrlParser):
        def error(self, message):  # argparse would print its usage (200+ options) and exit
            raise RecipeError(f"bad command-line override: {message}")

    return RecipeParser(dataclass_types(for_planning))


# ---------------------------------------------------------------------------------------------------------- loading


@dataclass
class Recipe:
    path: Path
    script: ScriptArguments
    training: Any  # trl.GRPOConfig
    model: Any  # trl.ModelConfig


def load_recipe(
    recipe: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), for_planning: bool = False
) -> Recipe:
    """Parse and validate a recipe plus `--key value` overrides. Raises `RecipeError` listing every problem.

    `for_planning` parses a GPU recipe on a machine without a GPU (preflight, tests): transformers refuses
    `bf16: true` without a GPU, so it is parsed as false and set back afterwards; the generation batch is left for
    the preflight to judge at the target world size (grpo_config.PlanningGRPOConfig).
    """
    import torch  # heavy: see _recipe_parser

    path = resolve_recipe(recipe)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"not valid YAML: {e}", path) from e
    if not isinstance(config, dict):
        raise RecipeError("a recipe must be a YAML mapping of keys to values", path)
    config, overrides, checkpointing_auto = activation_checkpointing.take_auto(config, overrides)
    problems = check_keys_and_types(config, str(path)) + check_override_keys(overrides)
    if problems:
        raise RecipeError(problems, path)

    parser = _recipe_parser(for_planning)
    # GRPOConfig's bf16 defaults to true (unless fp16): planning without a GPU parses it as false and sets it back
    wants_bf16 = _last_override(overrides, "bf16", config.get("bf16", not config.get("fp16", False)))
    hide_bf16 = for_planning and wants_bf16 and not torch.cuda.is_available()
    try:
        script, training, model = parser.parse_args_and_config(
            ["--config", str(path), *overrides, *(["--bf16", "false"] if hide_bf16 else [])]
        )
    except RecipeError as e:  # ours: a bad override, or a key's own check (ScriptArguments.__post_init__)
        raise RecipeError(e.problems, path) from None
    except ValueError as e:  # TRL's and transformers' own __post_init__ checks
        raise RecipeError(str(e), path) from e
    except SystemExit as e:  # argparse exited by itself (it printed why)
        raise RecipeError(f"bad command-line override in {list(overrides)}", path) from e
    if hide_bf16:
        training.bf16 = True
    script.gradient_checkpointing_auto = checkpointing_auto
    problems = validate(script, training, model)
    if not for_planning:  # what this machine lacks to run it (planning for a GPU cluster from a laptop is fine)
        problems += lora.runtime_problems(model, training)
    if problems:
        raise RecipeError(problems, path)
    return Recipe(path=path, script=script, training=training, model=model)


def _last_override(overrides, key: str, default):
    """The value a boolean key ends with: the last `--key [value]` override, else `default`."""
    value, flag = default, f"--{key}"
    for i, word in enumerate(overrides):
        if word == flag:
            following = overrides[i + 1] if i + 1 < len(overrides) else "true"
            value = following.startswith("--") or following.lower() in ("true", "1", "yes")
        elif word.startswith(flag + "="):
            value = word.split("=", 1)[1].lower() in ("true", "1", "yes")
    return bool(value)


def validate(script: ScriptArguments, training, model) -> list[str]:
    """Cross-field checks that need no model, data or GPU."""
    problems = check_mixture(script) + check_dynamic_sampling(script, training)
    problems += lora.recipe_problems(model, training) + evaluation.recipe_problems(script, training)
    if not script.dataset_name and not script.datasets:
        problems.append(
            "'dataset_name' is required: a hub id, a local path, or 'reasoning-gym:<task>' (or a 'datasets' mixture)"
        )
    cap = script.completions_log_max_per_step
    if cap is not None and cap < 1:
        problems.append(f"'completions_log_max_per_step' must be >= 1 (or null: no cap), got {cap}")
    if not model.model_name_or_path:
        problems.append("'model_name_or_path' is required")
    if training.trust_remote_code and model.model_revision in (None, "main"):
        problems.append(
            "'trust_remote_code: true' runs code from the model repository: pin it with 'model_revision: <commit sha>'"
        )
    if script.dataset_size < 1:
        problems.append(f"'dataset_size' must be at least 1, got {script.dataset_size} (tasks drawn from a generator)")
    model_problem = random_model_problem(model.model_name_or_path or "")
    if model_problem:
        problems.append(model_problem)
    if script.max_prompt_tokens is not None and script.max_prompt_tokens < 1:
        problems.append(f"'max_prompt_tokens' must be positive, got {script.max_prompt_tokens}")
    if training.vllm_mode not in ("colocate", "server"):
        problems.append(f"'vllm_mode' must be 'colocate' or 'server', got {training.vllm_mode!r}")
    if script.vllm_engine_kwargs is not None and not isinstance(script.vllm_engine_kwargs, dict):
        problems.append(f"'vllm_engine_kwargs' must be a mapping, got {script.vllm_engine_kwargs!r}")
    if script.vllm_allreduce_fusion not in ALLREDUCE_CHOICES:
        problems.append(
            f"'vllm_allreduce_fusion' must be one of {', '.join(ALLREDUCE_CHOICES)}, got {script.vllm_allreduce_fusion!r}"
        )
    if script.memory_check not in MEMORY_CHECK_CHOICES:
        problems.append(
            f"'memory_check' must be one of {', '.join(MEMORY_CHECK_CHOICES)}, got {script.memory_check!r}"
        )
    problems.extend(resume_setting_problems(script.resume))
    problems += process_choice.recipe_problems(
        script.vllm_engine_process, use_vllm=training.use_vllm, mode=training.vllm_mode, quantized=quantized_base(model),
        tp=training.vllm_tensor_parallel_size, sleep_mode=training.vllm_enable_sleep_mode)  # fmt: skip
    if script.vllm_kv_cache not in KV_CACHE_CHOICES:
        problems.append(f"'vllm_kv_cache' must be one of {', '.join(KV_CACHE_CHOICES)}, got {script.vllm_kv_cache!r}")
    if script.vllm_engine_step_timeout_s < 0:
        problems.append(
            f"'vllm_engine_step_timeout_s' must be >= 0 (0: no watch), got {script.vllm_engine_step_timeout_s}"
        )
    if script.vllm_sampling_logprobs not in SAMPLING_LOGPROBS:
        problems.append(
            f"'vllm_sampling_logprobs' must be one of {', '.join(SAMPLING_LOGPROBS)}, got {script.vllm_sampling_logprobs!r}"
        )
    try:
        parse_reward_specs(script.rewards, script.reward_funcs, training.reward_weights)
    except RewardSpecError as e:
        problems.extend(e.problems)
    return problems
