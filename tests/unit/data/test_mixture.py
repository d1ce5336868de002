"""Dataset mixtures: sources with their own columns mixed by weight into (prompt, solution); recipe errors.
(max_prompt_tokens stays null here, so loading needs no tokenizer.)"""

import json
from collections import Counter

import pytest

from open_grpo.data.mixture import load_mixture
from open_grpo.recipe import RecipeError, load_recipe
from open_grpo.recipe.keys import ScriptArguments


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def _sources(tmp_path):
    easy = _jsonl(tmp_path / "easy.jsonl", [{"question": f"easy {i}", "answer": f"e{i}"} for i in range(400)])
    hard = _jsonl(tmp_path / "hard.jsonl", [{"problem": f"hard {i}", "gold": f"h{i}", "x": i} for i in range(300)])
    return [
        {"name": easy, "weight": 2, "prompt_column": "question", "solution_column": "answer"},
        {"name": hard, "weight": 1, "solution_column": "gold", "system_prompt": "Think hard."},
        {"name": "reasoning-gym:basic_arithmetic", "weight": 1, "size": 300},
    ]


def _source_of(row):
    text = row["prompt"][-1]["content"]
    return "easy" if text.startswith("easy") else "hard" if text.startswith("hard") else "gym"


def test_three_sources_mixed_two_one_one(tmp_path):
    script = ScriptArguments(datasets=_sources(tmp_path), system_prompt="Be brief.")
    mixed = load_mixture(script, None, seed=3)

    assert mixed.column_names == ["prompt", "solution"]  # columns unified whatever each source called them
    shares = Counter(_source_of(r) for r in mixed)
    n = len(mixed)
    assert n > 500  # first_exhausted: ends when the first source runs out (easy: 400 rows at half the draws)
    assert abs(shares["easy"] / n - 0.5) < 0.05 and abs(shares["hard"] / n - 0.25) < 0.05, shares
    assert abs(shares["gym"] / n - 0.25) < 0.05, shares

    by_source = {}
    for row in mixed:
        by_source.setdefault(_source_of(row), row)
    easy, hard, gym = by_source["easy"], by_source["hard"], by_source["gym"]
    assert easy["prompt"][0] == {"role": "system", "content": "Be brief."}  # the top-level system prompt
    assert hard["prompt"][0] == {"role": "system", "content": "Think hard."}  # the entry's own
    assert easy["solution"].startswith("e") and hard["solution"].startswith("h") and gym["solution"]
    assert mixed["solution"] == load_mixture(script, None, seed=3)["solution"]  # seeded


def test_source_without_solution_gets_null(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"q": f"a {i}", "s": "1"} for i in range(20)])
    b = _jsonl(tmp_path / "b.jsonl", [{"q": f"b {i}"} for i in range(20)])
    script = ScriptArguments(
        datasets=[{"name": a, "solution_column": "s"}, {"name": b, "solution_column": None}], prompt_column="q"
    )
    mixed = load_mixture(script, None, seed=0)
    assert {r["solution"] for r in mixed if r["prompt"][-1]["content"].startswith("b")} == {None}


def test_source_error_names_the_entry(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"question": "x", "answer": "1"}])
    script = ScriptArguments(datasets=[{"name": a, "prompt_column": "question", "solution_column": "answer"},
                                       {"name": a, "prompt_column": "qestion"}])  # fmt: skip
    with pytest.raises(RecipeError, match=r"datasets\[1\] \(.*a.jsonl\): .*no column\(s\) \['qestion'"):
        load_mixture(script, None)


def test_recipe_errors_reported_together(write_recipe, tmp_path):
    entries = [
        {"name": "reasoning-gym:basic_arithmetic", "wieght": 2},
        {"name": "data/x.jsonl", "weight": 0, "size": 10},
        {"weight": 1, "prompt_column": 3},
    ]
    path = write_recipe({"datasets": entries, "mixture_stopping_strategy": "longest"})  # keeps dataset_name
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert "either 'dataset_name' (one source) or 'datasets' (a mixture), not both" in msg
    assert "datasets[0]: unknown key 'wieght'. Did you mean 'weight'?" in msg
    assert "datasets[1]: 'weight' must be a number > 0" in msg
    assert "datasets[1]: 'size' is the number of tasks a 'reasoning-gym:<task>' source generates" in msg
    assert "datasets[2]: 'name' is required" in msg and "datasets[2]: 'prompt_column' must be a string" in msg
    assert "'mixture_stopping_strategy' must be one of first_exhausted, all_exhausted" in msg


def test_recipe_with_mixture_parses(write_recipe):
    entries = [{"name": "reasoning-gym:basic_arithmetic", "weight": 3}, {"name": "reasoning-gym:chain_sum"}]
    recipe = load_recipe(write_recipe({"datasets": entries}, drop=["dataset_name"]))
    assert recipe.script.datasets == entries and recipe.script.dataset_name is None
    with pytest.raises(RecipeError, match="'datasets' must be a non-empty list"):
        load_recipe(write_recipe({"datasets": []}, drop=["dataset_name"]))
    with pytest.raises(RecipeError, match="'dataset_name' is required"):
        load_recipe(write_recipe({}, drop=["dataset_name"]))


def test_columns_every_source_shares_are_kept(tmp_path):
    """An `environment` column (tool routing) or a reward's extra column survives the mix when every source has it;
    a column only one source has is dropped."""
    a = _jsonl(tmp_path / "a.jsonl", [{"q": f"a {i}", "environment": "calc", "only_a": 1} for i in range(20)])
    b = _jsonl(tmp_path / "b.jsonl", [{"q": f"b {i}", "environment": "python"} for i in range(20)])
    script = ScriptArguments(datasets=[{"name": a}, {"name": b}], prompt_column="q", solution_column=None)
    mixed = load_mixture(script, None, seed=0)
    assert set(mixed.column_names) == {"prompt", "solution", "q", "environment"}  # not only_a
    routes = {r["prompt"][-1]["content"][0]: r["environment"] for r in mixed}
    assert routes == {"a": "calc", "b": "python"}
