"""Recipes: one flat YAML file per run, parsed with TRL's `TrlParser` into three dataclasses.

    ScriptArguments (open_grpo's: data, prompts, rewards, vLLM engine options)
    trl.GRPOConfig   (TRL's training and generation options, by their TRL 1.16 names)
    trl.ModelConfig  (model id, revision, dtype, attention implementation)

A recipe is given by name (`qwen-math-1.5b` -> `recipes/qwen-math-1.5b.yaml`) or by path. Every key must be a field
of one of the three; unknown keys and wrong types are reported together, naming the file, before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import activation_checkpointing, shipped
from .engine.allreduce import CHOICES as ALLREDUCE_CHOICES
from .engine.generation import SAMPLING_LOGPROBS

GENERATOR_PREFIX = "reasoning-gym:"


class RecipeError(ValueError):
    """A recipe (or its overrides) cannot run. Holds every problem found, one line each."""

    def __init__(self, problems: list[str] | str, source: str | os.PathLike | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = str(source) if source else None
        head = f"{self.source}: " if self.source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}{len(self.problems)} problem(s):\n{lines}")


@dataclass
class ScriptArguments:
    """open_grpo's own recipe keys. TRL's training keys live in `trl.GRPOConfig`, model keys in `trl.ModelConfig`."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Where prompts come from: a hub id (e.g. 'DigitalLearningGmbH/MATH-lighteval'), a local file or "
            "folder of .jsonl/.json/.parquet/.csv files, or an offline generator 'reasoning-gym:<task>'."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration (hub datasets only)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_size: int = field(
        default=1000, metadata={"help": "Number of tasks drawn from a 'reasoning-gym:' generator (seeded by `seed`)."}
    )
    prompt_column: str = field(default="problem", metadata={"help": "Column holding the user's prompt text."})
    solution_column: str | None = field(
        default="solution",
        metadata={"help": "Column holding the gold answer; it reaches rewards as `solution`. null if none."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System message put before every prompt."})
    max_prompt_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Prompts longer than this many tokens (after the chat template) are dropped before training and "
            "the count is logged. null keeps every prompt."
        },
    )
    rewards: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "Rewards to combine: [{name: accuracy, weight: 1.0, <reward parameter>: value, on_error: none}, "
            "...]. Names come from the `open_grpo.rewards` entry points (`open-grpo rewards` lists them)."
        },
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "Seed-config form of `rewards`: names only, weights from `reward_weights`."},
    )
    vllm_engine_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Options passed to the colocated vLLM engine (`vllm.LLM`) on top of TRL's, e.g. "
            "{max_num_seqs: 64, enable_prefix_caching: true}."
        },
    )

    vllm_sync_chunk_mib: int = field(
        default=1024,
        metadata={
            "help": "Colocate mode: push weights to vLLM in chunks of this many MiB (one load_weights call each) "
            "instead of one call per parameter. 0 keeps TRL's per-parameter path."
        },
    )

    vllm_allreduce_fusion: str = field(
        default="auto",
        metadata={
            "help": "TP > 1, colocate: vLLM's fused all-reduce + RMSNorm. 'auto': off where NVLink multicast is off or "
            "missing (vLLM 0.26 crashes there otherwise), vLLM's choice elsewhere; 'off'; 'trtllm' (FlashInfer's IPC "
            "backend); 'vllm' (no change). See open_grpo/engine/allreduce.py."
        },
    )

    vllm_detokenize: bool = field(
        default=False,
        metadata={
            "help": "Colocate: let vLLM detokenize completions as it generates. TRL decodes the token ids itself and "
            "never reads vLLM's text, so off saves host work on every decode step."
        },
    )

    vllm_flat_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Colocate: vLLM returns the sampled-token logprobs as flat lists (the same values) instead of one "
            "dict and Logprob object per token: fewer Python objects per decode step."
        },
    )

    vllm_sampling_logprobs: str = field(
        default="auto",
        metadata={
            "help": "Colocate: 'auto' asks vLLM for the sampled-token logprobs only when the loss reads them (the vLLM "
            "importance-sampling correction or the off-policy mask); 'always' asks on every call, as TRL does."
        },
    )

    fold_old_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Skip TRL's separate no-grad forward for old logprobs when only the vLLM importance-sampling "
            "correction needs them and every completion is trained on within one optimizer step; the loss pass "
            "computes the same correction from its own logprobs (open_grpo/engine/folded_logprobs.py)."
        },
    )

    pause_gc_in_generation: bool = field(
        default=True,
        metadata={
            "help": "Colocate: pause Python's garbage collector while vLLM generates (a full collection walks the "
            "whole trainer process and stalls the decode loop); it runs again once generation returns."
        },
    )

    gradient_checkpointing_auto: bool = field(
        default=False,
        init=False,
        metadata={"help": "Set by `gradient_checkpointing: auto` (decided at start-up from the memory plan)."},
    )

    save_final_model: bool = field(
        default=True,
        metadata={"help": "Save the trained model to output_dir at the end (off for throwaway runs: sanity checks)."},
    )

    resume: str = field(
        default="auto",
        metadata={
            "help": "'auto': resume from the newest complete checkpoint in output_dir if there is one; 'never': start "
            "over; or a checkpoint folder."
        },
    )

    def __post_init__(self):
        # From the command line these arrive as JSON strings.
        if isinstance(self.rewards, str):
            self.rewards = _json_arg("rewards", self.rewards)
        if isinstance(self.vllm_engine_kwargs, str):
            self.vllm_engine_kwargs = _json_arg("vllm_engine_kwargs", self.vllm_engine_kwargs)


def _json_arg(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecipeError(f'--{name} must be JSON (e.g. \'[{{"name": "accuracy"}}]\'), got {text!r}: {e}') from e


def dataclass_types() -> tuple[type, type, type]:
    from trl import GRPOConfig, ModelConfig

    return ScriptArguments, GRPOConfig, ModelConfig


# --------------------------------------------------------------------------------------------------- finding recipes


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


# ----------------------------------------------------------------------------------------------------- type checks


def _fields_by_name() -> dict[str, tuple[type, Any]]:
    """Every recipe key -> (its dataclass, its resolved type)."""
    out = {}
    for cls in reversed(dataclass_types()):  # ScriptArguments wins a name clash
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                out[f.name] = (cls, hints[f.name])
    return out


def _type_ok(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits a dataclass field type (strings that argparse would convert are accepted)."""
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return (
            isinstance(value, list) and all(_type_ok(v, args[0]) for v in value) if args else isinstance(value, list)
        )
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp} or value in tp.__members__
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or _parses(value, int)
    if tp is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _parses(value, float)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a type we do not know how to check: let TRL's parser decide


def _parses(value: Any, kind: type) -> bool:
    if not isinstance(value, str):
        return False
    try:
        kind(value)  # YAML reads '3e-6' as a string; argparse converts it like a command-line value
        return True
    except ValueError:
        return False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_keys_and_types(config: dict, source: str) -> list[str]:
    known = _fields_by_name()
    problems = []
    for key, value in config.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"unknown key {key!r}.{hint} (keys are fields of ScriptArguments, GRPOConfig, ModelConfig)"
            )
            continue
        cls, tp = known[key]
        if not _type_ok(value, tp):
            problems.append(f"{key!r} must be {_type_name(tp)} ({cls.__name__}), got {value!r}")
    return problems


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
    `bf16: true` without a GPU, so it is parsed as false and set back afterwards.
    """
    import torch
    from trl import TrlParser

    path = resolve_recipe(recipe)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"not valid YAML: {e}", path) from e
    if not isinstance(config, dict):
        raise RecipeError("a recipe must be a YAML mapping of keys to values", path)
    config, overrides, checkpointing_auto = activation_checkpointing.take_auto(config, overrides)
    problems = check_keys_and_types(config, str(path))
    if problems:
        raise RecipeError(problems, path)

    parser = TrlParser(dataclass_types())
    hide_bf16 = for_planning and config.get("bf16") and not torch.cuda.is_available()
    try:
        script, training, model = parser.parse_args_and_config(
            ["--config", str(path), *overrides, *(["--bf16", "false"] if hide_bf16 else [])]
        )
    except ValueError as e:  # TRL's and transformers' own __post_init__ checks
        raise RecipeError(str(e), path) from e
    except SystemExit as e:  # argparse rejected an override; it already printed why
        raise RecipeError(f"bad command-line override in {list(overrides)}", path) from e
    if hide_bf16:
        training.bf16 = True
    script.gradient_checkpointing_auto = checkpointing_auto
    problems = validate(script, training, model)
    if problems:
        raise RecipeError(problems, path)
    return Recipe(path=path, script=script, training=training, model=model)


def validate(script: ScriptArguments, training, model) -> list[str]:
    """Cross-field checks that need no model, data or GPU."""
    from .rewards.registry import RewardSpecError, parse_reward_specs

    problems = []
    if not script.dataset_name:
        problems.append("'dataset_name' is required: a hub id, a local path, or 'reasoning-gym:<task>'")
    if not model.model_name_or_path:
        problems.append("'model_name_or_path' is required")
    if training.trust_remote_code and model.model_revision in (None, "main"):
        problems.append(
            "'trust_remote_code: true' runs code from the model repository: pin it with 'model_revision: <commit sha>'"
        )
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
    if script.vllm_sampling_logprobs not in SAMPLING_LOGPROBS:
        problems.append(
            f"'vllm_sampling_logprobs' must be one of {', '.join(SAMPLING_LOGPROBS)}, got {script.vllm_sampling_logprobs!r}"
        )
    try:
        parse_reward_specs(script.rewards, script.reward_funcs, training.reward_weights)
    except RewardSpecError as e:
        problems.extend(e.problems)
    return problems
