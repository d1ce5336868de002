"""Recipes: one flat YAML file per run plus `--key value` overrides, checked in one pass before anything loads.

    load_recipe("qwen-math-1.5b", ["--max_steps", "10"], world_size=8)

A recipe is given by name (`qwen-math-1.5b` -> `recipes/qwen-math-1.5b.yaml`) or by path. The pass collects every
problem and raises one `RecipeError` listing them, naming the file: unknown keys (with the closest key), types and
choices (schema.py, values.py), then the rules of the checked values: counts, sampling, optimizer and TRL's and
transformers' cross-field checks, the batch arithmetic for `world_size` ranks (rules_training.py, world_size.py),
data, eval set and resume (rules_data.py), model, LoRA targets and reward specs (rules_model.py). A key whose type or
choice is wrong is left at its default for the rules, so one run reports everything.

Nothing here imports torch: `open-grpo check` and `launch-args` are as strict as training and answer in a second.
Training builds TRL's real config from the result (grpo_config.trainer_config), whose own checks come last.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from open_grpo.environments.specs import recipe_problems as tool_problems
from open_grpo.errors import RecipeError, did_you_mean
from open_grpo.recipe import schema, shipped
from open_grpo.recipe.engine_process import recipe_problems as engine_process_problems
from open_grpo.recipe.keys import ScriptArguments
from open_grpo.recipe.overrides import parse_overrides
from open_grpo.recipe.rules_data import data_problems
from open_grpo.recipe.rules_model import model_problems, reward_problems
from open_grpo.recipe.rules_training import training_problems
from open_grpo.recipe.values import checked

REWARD_KEYS = {"rewards", "reward_funcs", "reward_weights"}  # a wrong one is said once, not as "no rewards" too
# `gradient_checkpointing: auto` (TRL's key is a bool): decided at start-up (activation_checkpointing.py)
AUTO = "auto"


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


@dataclass
class Recipe:
    """A checked recipe. `training` holds every OpenGRPOConfig key (defaults filled in) as plain values, without
    TRL's derived ones; `grpo_config.trainer_config(recipe)` builds the real config the trainer reads."""

    path: Path | None
    given: dict  # every key the file and the overrides set, with its checked value
    script: ScriptArguments
    training: Any
    model: Any  # trl.ModelConfig
    world_size: int = 1
    source: str = field(default="", repr=False)


def world_size_here() -> int:
    """The world size of this process's launch (accelerate and torchrun export WORLD_SIZE), else 1."""
    return int(os.environ.get("WORLD_SIZE", 1))


def read_recipe_file(path: Path) -> dict:
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"not valid YAML: {e}", path) from e
    if not isinstance(config, dict):
        raise RecipeError("a recipe must be a YAML mapping of keys to values", path)
    return config


def checked_keys(config: dict, overrides=()) -> tuple[dict, set, bool, list[str]]:
    """(the keys the file and the overrides set, checked; the keys whose value is wrong; whether gradient
    checkpointing is `auto`; problems)."""
    known = schema.keys()
    words, problems = parse_overrides(overrides, known)
    given, failed, auto = {}, set(), False
    for key, value, from_cli in [(k, v, False) for k, v in config.items()] + [(k, v, True) for k, v in words.items()]:
        if key not in known:
            problems.append(f"unknown key {key!r}.{did_you_mean(key, known)} (keys are fields of ScriptArguments, "
                            "OpenGRPOConfig, ModelConfig: see README's Recipes)")  # fmt: skip
            continue
        if key == "gradient_checkpointing":
            auto = isinstance(value, str) and value.lower() == AUTO
            value = True if auto else value
        value, problem = checked(known[key], value, from_cli)
        if problem:
            problems.append(problem)
            failed.add(key)
            given.pop(key, None)  # an override's bad value does not leave the file's value standing
        else:
            failed.discard(key)
            given[key] = value
    return given, failed, auto, problems


def recipe_from_keys(config: dict, overrides=(), *, world_size: int | None = None, path: Path | None = None,
                     source: str = "") -> Recipe:  # fmt: skip
    """Check a recipe's mapping plus overrides for `world_size` ranks (default: this launch's). Raises `RecipeError`
    listing every problem."""
    from trl import ModelConfig  # TRL's ModelConfig module is light: no torch

    source = source or str(path or "recipe")
    world = world_size or world_size_here()
    given, failed, auto, problems = checked_keys(config, overrides)
    sections = {name: {k: v for k, v in given.items() if schema.keys()[k].section == name}
                for name in ("script", "training", "model")}  # fmt: skip
    script = ScriptArguments(**sections["script"])
    training = SimpleNamespace(
        **{**schema.defaults("training"), **sections["training"]}, gradient_checkpointing_auto=auto
    )
    model_values = SimpleNamespace(**{**schema.defaults("model"), **sections["model"]})
    problems += training_problems(training, world) + data_problems(script, training, failed)
    problems += model_problems(model_values, training, schema.defaults("model"), failed)
    problems += [] if failed & REWARD_KEYS else reward_problems(script, training)
    problems += tool_problems(script, training)  # environment, tools, max_tool_calling_iterations; TP > 1 refused
    if "vllm_engine_process" not in failed:
        problems += engine_process_problems(
            training.vllm_engine_process, use_vllm=training.use_vllm, mode=training.vllm_mode,
            tp=training.vllm_tensor_parallel_size, sleep_mode=training.vllm_enable_sleep_mode,
            quantized=bool(model_values.use_peft and (model_values.load_in_4bit or model_values.load_in_8bit)),
        )  # fmt: skip
    if problems:
        raise RecipeError(problems, source)
    model = ModelConfig(**sections["model"])
    return Recipe(path=path, given=given, script=script, training=training, model=model, world_size=world,
                  source=source)  # fmt: skip


def load_recipe(recipe: str | os.PathLike, overrides=(), world_size: int | None = None) -> Recipe:
    """Parse and check a recipe (a name or a path) plus `--key value` overrides, for `world_size` ranks (default: this
    launch's). Raises `RecipeError` listing every problem, naming the file."""
    path = resolve_recipe(recipe)
    return recipe_from_keys(read_recipe_file(path), overrides, world_size=world_size, path=path)
