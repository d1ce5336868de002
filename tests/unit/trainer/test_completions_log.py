"""completions.jsonl: one readable line per completion of every logged step, capped, not duplicated on resume."""

import json
import math
from types import SimpleNamespace

import pytest

from open_grpo.engine.gathered import GatheredRows
from open_grpo.train import main
from open_grpo.trainer.completions_log import CompletionsLog, drop_rows_after


def _rows(n, start=0):
    return GatheredRows(
        prompts=[[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"q{i}"}]
                 for i in range(start, start + n)],
        completions=[[{"role": "assistant", "content": f"a{i}"}] for i in range(start, start + n)],
        rewards={"accuracy": [1.0, math.nan] * (n // 2), "format": [0.5, math.nan] * (n // 2)},
        advantages=[0.25] * n,
        extra={"solution": [str(i) for i in range(start, start + n)]},
    )  # fmt: skip


def test_rows_are_readable_and_capped(tmp_path):
    log = CompletionsLog(tmp_path, max_per_step=5, weights=[1.0, 2.0], is_main=True)
    log.on_train_begin(None, SimpleNamespace(global_step=0), None)
    log.capture(_rows(4), step=1)
    log.capture(_rows(4, start=4), step=1)  # a second generation call in the same step: 1 more row fits
    assert log.flush(global_step=1) == 5
    assert log.flush(global_step=1) == 0  # written once
    rows = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 1, "prompt": "q0", "completion": "a0", "solution": "0", "reward": 2.0,
                       "rewards": {"accuracy": 1.0, "format": 0.5}, "advantage": 0.25}  # fmt: skip
    assert rows[1]["reward"] is None and rows[1]["rewards"] == {"accuracy": None, "format": None}
    assert [r["prompt"] for r in rows] == ["q0", "q1", "q2", "q3", "q4"]


def test_uncapped_and_other_ranks_write_nothing(tmp_path):
    log = CompletionsLog(tmp_path, max_per_step=None, weights=[1.0, 1.0], is_main=True)
    log.capture(_rows(300), step=2)
    assert log.flush(global_step=2) == 300
    other = CompletionsLog(tmp_path / "rank1", max_per_step=None, weights=[1.0, 1.0], is_main=False)
    other.capture(_rows(4), step=2)
    assert other.flush(global_step=2) == 0 and not (tmp_path / "rank1").exists()


def test_step_without_generation_writes_nothing(tmp_path):
    log = CompletionsLog(tmp_path, max_per_step=None, weights=[1.0, 1.0], is_main=True)
    log.capture(_rows(2), step=3)
    assert log.flush(global_step=3) == 2
    assert log.flush(global_step=4) == 0  # step 4 reused step 3's generations (num_iterations > 1)


def test_resume_drops_rows_past_the_checkpoint(tmp_path):
    path = tmp_path / "completions.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s, "completion": "x"}) + "\n" for s in (1, 1, 2, 3, 4)) + '{"step": 5, '
    )
    log = CompletionsLog(tmp_path, max_per_step=None, weights=[1.0], is_main=True)
    log.on_train_begin(None, SimpleNamespace(global_step=2), None)  # resumed from checkpoint-2
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 1, 2]
    assert drop_rows_after(path, 0) == 3 and path.read_text() == ""  # a fresh run starts empty
    assert drop_rows_after(tmp_path / "missing.jsonl", 0) == 0


@pytest.mark.slow
def test_training_run_writes_every_completion(write_recipe, tmp_path):
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"problem": f"Say word {i}.", "solution": f"w{i}"}) + "\n" for i in range(16)))
    recipe = write_recipe(
        {
            "datasets": [{"name": "reasoning-gym:basic_arithmetic", "size": 16}, {"name": str(data)}],
            "log_completions": True,
            "completions_log_max_per_step": None,
            "num_completions_to_print": 1,
            "rewards": [{"name": "lowercase_letters", "weight": 2.0}],
            "max_steps": 2,
            "num_generations": 4,
            "max_completion_length": 8,
            "save_final_model": False,
        },
        drop=["dataset_name", "dataset_size"],
    )
    main(str(recipe))
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] * 8 + [2] * 8  # 2 prompts x 4 completions per step
    assert all(isinstance(r["prompt"], str) and isinstance(r["completion"], str) and r["solution"] for r in rows)
    assert all(r["reward"] == pytest.approx(2.0 * r["rewards"]["lowercase_letters"]) for r in rows)
    metrics = {
        r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "reward" in r
    }
    for step in (1, 2):  # the same completions TRL scored: their mean is the logged reward
        mean = sum(r["reward"] for r in rows if r["step"] == step) / 8
        assert mean == pytest.approx(metrics[step]["reward"], abs=1e-5)
