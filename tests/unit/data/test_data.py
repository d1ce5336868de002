"""Loading prompts: local files, generators, and every data error before a model loads."""

import json

import pytest

from open_grpo.data.prompts import filter_long_prompts, load_prompts, load_raw_dataset, to_prompts
from open_grpo.data.tiny_model import qwen_tokenizer
from open_grpo.recipe import RecipeError
from open_grpo.recipe.keys import ScriptArguments

ROWS = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(6)]


@pytest.fixture(scope="module")
def tokenizer():
    return qwen_tokenizer()


def _script(name, **kw):
    return ScriptArguments(dataset_name=str(name), prompt_column="question", solution_column="answer", **kw)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_local_files(tmp_path, suffix, tokenizer):
    import pandas as pd

    path = tmp_path / f"train{suffix}"
    frame = pd.DataFrame(ROWS)
    {".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".json": lambda: path.write_text(json.dumps(ROWS)),
     ".parquet": lambda: frame.to_parquet(path),
     ".csv": lambda: frame.to_csv(path, index=False)}[suffix]()  # fmt: skip
    ds = load_prompts(_script(path, system_prompt="Be brief."), tokenizer)
    assert len(ds) == 6
    assert ds[0]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 0 + 1?"},
    ]
    assert ds[0]["solution"] == "1"


def test_local_folder(tmp_path, tokenizer):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:3]))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[3:]))
    assert len(load_prompts(_script(tmp_path), tokenizer)) == 6


def test_missing_column_names_columns(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"q": "x", "answer": "1"}))
    with pytest.raises(RecipeError, match=r"no column\(s\) \['question'\]; its columns are \['q', 'answer'\]"):
        to_prompts(load_raw_dataset(_script(path)), _script(path))


def test_path_not_found():
    with pytest.raises(RecipeError, match="dataset path 'data/nothing.jsonl' not found"):
        load_raw_dataset(_script("data/nothing.jsonl"))


def test_hub_id_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeError, match="hub is offline.*local file or folder"):
        load_raw_dataset(_script("DigitalLearningGmbH/MATH-lighteval"))


def test_empty_after_filtering(tmp_path, tokenizer):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS))
    ds = to_prompts(load_raw_dataset(_script(path)), _script(path))
    with pytest.raises(RecipeError, match="no prompts left"):
        filter_long_prompts(ds, tokenizer, max_prompt_tokens=5)
    kept = filter_long_prompts(ds, tokenizer, max_prompt_tokens=40)
    assert len(kept) == 6


def test_reasoning_gym_generator(tokenizer):
    script = ScriptArguments(dataset_name="reasoning-gym:basic_arithmetic", dataset_size=5)
    ds = load_prompts(script, tokenizer, seed=1)
    assert len(ds) == 5 and ds[0]["prompt"][-1]["role"] == "user" and ds[0]["solution"]
    again = load_prompts(script, tokenizer, seed=1)
    assert ds["solution"] == again["solution"]  # seeded


def test_unknown_generator():
    with pytest.raises(RecipeError, match="reasoning-gym cannot make task"):
        load_raw_dataset(ScriptArguments(dataset_name="reasoning-gym:no_such_task"))


def test_qwen_tokenizer_matches_qwen25(tokenizer):
    assert tokenizer("Hello world").input_ids == [9707, 1879]
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert len(tokenizer) == 151665
