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
import itertools
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import shipped
from .engine.allreduce import CHOICES as ALLREDUCE_CHOICES
from .models import random_model_problem
from .rewards.registry import RewardSpecError, parse_reward_specs

GENERATOR_PREFIX = "reasoning-gym:"
MEMORY_CHECK_CHOICES = ("error", "warn")


class RecipeError(ValueError):
    """A recipe (or its overrides) cannot run. Holds every problem found, one line each."""

    def __init__(self, problems: list[str] | str, source: str | os.PathLike | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = str(source) if source else None
        head = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:  # one mistake, one line
            super().__init__(f"{head}{self.problems[0]}")
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{head}{len(self.problems)} problems:\n{lines}")


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
    datasets: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "A mixture instead of 'dataset_name': [{name, weight, split, size, config, prompt_column, "
            "solution_column, system_prompt}, ...], mixed by weight (open_grpo/mixture.py). Keys an entry leaves out "
            "take the top-level value."
        },
    )
    mixture_stopping_strategy: str = field(
        default="first_exhausted",
        metadata={
            "help": "When a 'datasets' mixture ends (datasets.interleave_datasets): 'first_exhausted' (no row twice), "
            "'all_exhausted' (smaller sources repeat until every row is used), 'all_exhausted_without_replacement'."
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
            "help": "Rewards to combine: [{name: accuracy, weight: 1.0, <reward parameter>: value, on_error: none, "
            "time_limit: <seconds per call>}, ...]. Names come from the `open_grpo.rewards` entry points "
            "(`open-grpo rewards` lists them)."
        },
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "TRL's form of `rewards`: names only, weights from `reward_weights`."},
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

    memory_check: str = field(
        default="error",
        metadata={
            "help": "What the preflight (open-grpo check, launch-args, the trainer at start-up) does with a memory plan "
            "over the card: 'error' stops; 'warn' only warns, for a plan you know to be pessimistic for your run."
        },
    )

    save_final_model: bool = field(
        default=True,
        metadata={"help": "Save the trained model to output_dir at the end (off for throwaway runs: sanity checks)."},
    )

    eval_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Prompts to evaluate on during training, in any form 'dataset_name' takes. When: TRL's 'eval_strategy'"
            " / 'eval_steps' / 'eval_on_start'; 'num_generations_eval' completions per prompt (see evaluation.py)."
        },
    )
    eval_dataset_config: str | None = field(default=None, metadata={"help": "Eval dataset configuration (hub only)."})
    eval_dataset_split: str = field(default="test", metadata={"help": "Split to evaluate on (hub datasets only)."})
    eval_dataset_size: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate on the first N prompts of the eval split (null: all). For 'reasoning-gym:' the number of "
            "tasks drawn (required), seeded apart from the training tasks."
        },
    )
    eval_prompt_column: str | None = field(
        default=None, metadata={"help": "Eval set's prompt column (null: as train)."}
    )
    eval_solution_column: str | None = field(
        default=None,
        metadata={"help": "Eval set's gold-answer column, given to rewards as `solution` (null: as train)."},
    )

    resume: str = field(
        default="auto",
        metadata={
            "help": "'auto': continue output_dir's run; 'never': a new run (the old one moves to previous/); 'weights': "
            "a new run from the newest checkpoint's model weights; or a checkpoint folder (open_grpo/resume.py)."
        },
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
            "the batch with fresh prompts (open_grpo/dynamic_sampling.py)."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=3,
        metadata={
            "help": "Dynamic sampling: refill rounds per generation batch at most; then the batch is completed with "
            "zero-variance groups (advantage 0)."
        },
    )

    def __post_init__(self):
        # From the command line these arrive as JSON strings.
        if isinstance(self.rewards, str):
            self.rewards = _json_arg(
                self.rewards, "'rewards' must be a list of mappings, e.g. [{name: accuracy}]", '[{"name": "accuracy"}]'
            )
        if isinstance(self.datasets, str):
            self.datasets = _json_arg(
                self.datasets,
                "'datasets' must be a list of mappings, e.g. [{name: reasoning-gym:basic_arithmetic, weight: 1}]",
                '[{"name": "reasoning-gym:basic_arithmetic", "weight": 1}]',
            )
        if isinstance(self.vllm_engine_kwargs, str):
            self.vllm_engine_kwargs = _json_arg(
                self.vllm_engine_kwargs,
                "'vllm_engine_kwargs' must be a mapping, e.g. {max_num_seqs: 64}",
                '{"max_num_seqs": 64}',
            )


def _json_arg(text: str, expected: str, json_example: str) -> Any:
    """A YAML-valued key given as a string (a command-line override, or a plain word in the recipe) -> its value."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise RecipeError(f"{expected}; on the command line as JSON ('{json_example}'); got {text!r}") from None


def dataclass_types(for_planning: bool = False) -> tuple[type, type, type]:
    from trl import ModelConfig

    from .grpo_config import PlanningGRPOConfig, RecipeGRPOConfig

    return ScriptArguments, PlanningGRPOConfig if for_planning else RecipeGRPOConfig, ModelConfig


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


# Keys whose YAML value may also be a string, which TRL passes through: PEFT's 'all-linear' or a module-name regex.
ALSO_STR = ("lora_target_modules",)


def _fields_by_name() -> dict[str, tuple[type, Any]]:
    """Every recipe key -> (its dataclass, its resolved type)."""
    out = {}
    for cls in reversed(dataclass_types()):  # ScriptArguments wins a name clash
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                out[f.name] = (cls, hints[f.name] | str if f.name in ALSO_STR else hints[f.name])
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


def check_override_keys(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Every `--key` of the command-line overrides is a recipe key (or `--no_<key>` for a boolean one).

    argparse would take an unknown `--key` as a prefix of a known one (`--learning_rat`) or reject it with its whole
    usage (200+ options); here each gets one line with the closest key.
    """
    known = _fields_by_name()
    names = set(known) | {f"no_{k}" for k, (_, tp) in known.items() if _type_ok(True, tp)}
    problems = []
    stray = list(itertools.takewhile(lambda t: not t.startswith("--"), overrides))
    if stray:
        problems.append(f"command-line value(s) {stray} before any --<key>: overrides are --<key> <value>")
    for token in overrides:
        if not token.startswith("--"):
            continue
        key = token[2:].split("=", 1)[0]
        if key.replace("-", "_") in names:
            continue
        close = difflib.get_close_matches(key.replace("-", "_"), sorted(names), n=1)
        hint = f" Did you mean '--{close[0]}'?" if close else ""
        problems.append(f"unknown command-line override '--{key}'.{hint} Overrides are recipe keys: --<key> <value>")
    return problems


def _recipe_parser(for_planning: bool = False):
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
    import torch

    path = resolve_recipe(recipe)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"not valid YAML: {e}", path) from e
    if not isinstance(config, dict):
        raise RecipeError("a recipe must be a YAML mapping of keys to values", path)
    problems = check_keys_and_types(config, str(path)) + check_override_keys(overrides)
    if problems:
        raise RecipeError(problems, path)

    parser = _recipe_parser(for_planning)
    hide_bf16 = for_planning and config.get("bf16") and not torch.cuda.is_available()
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
    problems = validate(script, training, model)
    if not for_planning:  # what this machine lacks to run it (planning for a GPU cluster from a laptop is fine)
        from .lora import runtime_problems

        problems += runtime_problems(model, training)
    if problems:
        raise RecipeError(problems, path)
    return Recipe(path=path, script=script, training=training, model=model)


def validate(script: ScriptArguments, training, model) -> list[str]:
    """Cross-field checks that need no model, data or GPU."""
    from . import evaluation, lora
    from .dynamic_sampling import check_config as check_dynamic_sampling
    from .mixture import check_mixture
    from .resume import setting_problems as resume_setting_problems

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
    try:
        parse_reward_specs(script.rewards, script.reward_funcs, training.reward_weights)
    except RewardSpecError as e:
        problems.extend(e.problems)
    return problems
