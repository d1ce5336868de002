"""Rules of the data and run keys: the training source or `datasets` mixture, the eval set, `resume`.

The loaders (data.py, mixture.py, evaluation.py) and resume.py read these keys; their checks live here, in the recipe
layer, so that a recipe is checked before (and without) any of them.
"""

from __future__ import annotations

from pathlib import Path

from open_grpo.errors import did_you_mean
from open_grpo.recipe.keys import GENERATOR_PREFIX, RESUME_CHOICES, ScriptArguments
from open_grpo.sandbox.recipe import settings_problems as sandbox_problems

# `datasets:` entry key -> the ScriptArguments field it sets for that source (mixture.py loads with it)
FIELD_OF_ENTRY_KEY = {"name": "dataset_name", "split": "dataset_train_split", "size": "dataset_size",
                      "config": "dataset_config", "prompt_column": "prompt_column",
                      "solution_column": "solution_column", "system_prompt": "system_prompt"}  # fmt: skip
ENTRY_KEYS = ("weight", *FIELD_OF_ENTRY_KEY)
NULLABLE_ENTRY_KEYS = ("config", "solution_column", "system_prompt")
EVAL_KEYS = ("eval_dataset_config", "eval_dataset_split", "eval_dataset_size", "eval_prompt_column",
             "eval_solution_column")  # fmt: skip


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def entry_problems(where: str, entry) -> list[str]:
    """One `datasets:` entry's problems."""
    if not isinstance(entry, dict):
        return [f"{where} must be a mapping like {{name: data/train.jsonl, weight: 1}}, got {entry!r}"]
    problems = []
    for key in entry:
        if key not in ENTRY_KEYS:
            problems.append(
                f"{where}: unknown key {key!r}.{did_you_mean(key, ENTRY_KEYS)} Keys: {', '.join(ENTRY_KEYS)}"
            )
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: 'name' is required: a hub id, a local path, or 'reasoning-gym:<task>'")
    weight = entry.get("weight", 1.0)
    if not _number(weight) or not 0 < weight < float("inf"):
        problems.append(
            f"{where}: 'weight' must be a number > 0 (its share is weight / sum of weights), got {weight!r}"
        )
    size = entry.get("size")
    if "size" in entry:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f"{where}: 'size' must be an integer >= 1, got {size!r}")
        elif isinstance(name, str) and not name.startswith(GENERATOR_PREFIX):
            problems.append(
                f"{where}: 'size' is the number of tasks a '{GENERATOR_PREFIX}<task>' source generates; "
                f"{name!r} is used whole: remove 'size'"
            )
    for key in ("split", "prompt_column", *NULLABLE_ENTRY_KEYS):
        value = entry.get(key)
        if key in entry and not isinstance(value, str) and not (value is None and key in NULLABLE_ENTRY_KEYS):
            kind = "a string or null" if key in NULLABLE_ENTRY_KEYS else "a string"
            problems.append(f"{where}: {key!r} must be {kind}, got {value!r}")
    return problems


def source_problems(script: ScriptArguments, failed=frozenset()) -> list[str]:
    """The training source: `dataset_name` or a `datasets` mixture, and its counts (`failed`: keys whose value was
    wrong, already said)."""
    problems = []
    if script.datasets is not None:
        if script.dataset_name:
            problems.append("give either 'dataset_name' (one source) or 'datasets' (a mixture), not both")
        if not script.datasets:
            problems.append("'datasets' must be a non-empty list of {name: ..., weight: ...}, got []")
        for i, entry in enumerate(script.datasets):
            problems.extend(entry_problems(f"datasets[{i}]", entry))
    elif not script.dataset_name and not failed & {"dataset_name", "datasets"}:
        problems.append(
            "'dataset_name' is required: a hub id, a local path, or 'reasoning-gym:<task>' (or a 'datasets' mixture)"
        )
    if script.dataset_size < 1:
        problems.append(f"'dataset_size' must be at least 1, got {script.dataset_size} (tasks drawn from a generator)")
    return problems


def eval_problems(script: ScriptArguments, training) -> list[str]:
    """The eval set and when it runs (TRL's `eval_strategy` / `eval_on_start`)."""
    problems = []
    runs = training.eval_strategy != "no" or training.eval_on_start
    if not script.eval_dataset_name:
        if runs:
            problems.append(
                "evaluation is on ('eval_strategy' is not 'no', or 'eval_on_start: true') but 'eval_dataset_name' is "
                "not set: name the eval prompts (hub id, local file or folder, 'reasoning-gym:<task>')"
            )
        defaults = {k: ScriptArguments.__dataclass_fields__[k].default for k in EVAL_KEYS}
        for key in EVAL_KEYS:
            if getattr(script, key) != defaults[key]:
                problems.append(f"'{key}' is set but 'eval_dataset_name' is not: set it too, or remove '{key}'")
        return problems
    if not runs:
        problems.append(
            "'eval_dataset_name' is set but evaluation never runs ('eval_strategy: no', 'eval_on_start: false'): set "
            "'eval_strategy: steps' with 'eval_steps: N' and/or 'eval_on_start: true', or remove 'eval_dataset_name'"
        )
    if script.eval_dataset_size is not None and script.eval_dataset_size < 1:
        problems.append(f"'eval_dataset_size' must be positive, got {script.eval_dataset_size}")
    if script.eval_dataset_name.startswith(GENERATOR_PREFIX) and script.eval_dataset_size is None:
        problems.append("a 'reasoning-gym:' eval set needs 'eval_dataset_size' (how many tasks to draw)")
    return problems


def resume_problems(resume: str) -> list[str]:
    if resume in RESUME_CHOICES:
        return []
    if resume.lower() in RESUME_CHOICES:
        return [f"'resume' must be one of auto, never, weights (lower case) or a checkpoint folder, got {resume!r}"]
    if not Path(resume).is_dir():
        return [
            f"'resume' must be auto, never, weights or an existing checkpoint folder, got {resume!r}: no such folder"
        ]
    return []


def data_problems(script: ScriptArguments, training, failed=frozenset()) -> list[str]:
    problems = source_problems(script, failed) + eval_problems(script, training) + resume_problems(script.resume)
    return problems + sandbox_problems(script.sandbox)
