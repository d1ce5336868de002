"""Evaluation during training: recipe keys, pass@k, eval prompts through data.py, and a tiny run whose eval rows
land in metrics.jsonl with `eval/` keys and the right pass@k."""

import itertools
import json
import math

import pytest

from open_grpo.recipe import RecipeError, load_recipe
from open_grpo.rewards import registry
from open_grpo.train import main
from open_grpo.trainer.evaluation import load_eval_prompts, pass_at_k, pass_at_k_metrics

EVAL = {"eval_dataset_name": "reasoning-gym:basic_arithmetic", "eval_dataset_size": 4, "eval_strategy": "steps",
        "eval_steps": 2, "num_generations_eval": 4}  # fmt: skip


def _brute_pass_at_k(n, c, k):
    """The chance that k of the n completions, drawn without replacement, hold a correct one: by enumeration."""
    outcomes = [1] * c + [0] * (n - c)
    draws = list(itertools.combinations(outcomes, k))
    return sum(any(d) for d in draws) / len(draws)


@pytest.mark.parametrize("n,c,k", [(4, 0, 1), (4, 1, 1), (4, 1, 2), (4, 2, 2), (4, 3, 4), (8, 3, 5), (5, 5, 3)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))


def test_pass_at_k_limits():
    assert pass_at_k(4, 1, 1) == 0.25 and pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_pass_at_k_metrics_on_hand_made_groups():
    nan = math.nan
    # two prompts x 4 completions; rewards: a 0/1 one, a graded one, a 0/1 one with None (NaN) values
    rows = [[1, 0.5, 1], [0, 0.2, nan], [0, 0.1, 0], [0, 0.9, nan],  # prompt 1: one correct
            [1, 0.3, nan], [1, 0.3, nan], [0, 0.4, nan], [1, 0.0, nan]]  # fmt: skip
    out = pass_at_k_metrics(rows, ["acc", "graded", "sparse"], k=4)
    assert out["rewards/acc/pass@1"] == pytest.approx((1 / 4 + 3 / 4) / 2)
    assert out["rewards/acc/pass@4"] == 1.0
    assert "rewards/graded/pass@1" not in out  # 0.5 is not 0/1: the mean says it all
    assert out["rewards/sparse/pass@1"] == pytest.approx((1 / 4 + 0) / 2)  # None counts as not passed
    assert out["rewards/sparse/pass@4"] == 0.5
    assert pass_at_k_metrics([[1.0], [0.0]], ["acc"], k=1) == {"rewards/acc/pass@1": 0.5}
    with pytest.raises(ValueError, match="groups of 4"):
        pass_at_k_metrics(rows[:6], ["acc", "graded", "sparse"], k=4)


def test_eval_rewards_leave_out_the_padding_of_the_last_batch():
    """Across ranks the last eval batch is topped up with repeats of the first prompts: only the real ones count."""
    import torch

    from open_grpo.trainer.evaluation import EvalRewards

    collected = EvalRewards()
    collected.add(torch.tensor([[1.0], [0.0], [0.0], [0.0]]))  # k=2: prompt 1 (one correct), prompt 2 (none)
    collected.add(torch.tensor([[0.0], [0.0], [1.0], [0.0]]))  # prompt 3 (none), prompt 1 again: the padding
    assert collected.pop_metrics(["acc"], k=2, num_prompts=3) == {
        "rewards/acc/pass@1": 1 / 6,
        "rewards/acc/pass@2": 1 / 3,
    }
    assert collected.rows == []


def test_eval_keys_checked(write_recipe):
    cases = [
        ({"eval_strategy": "steps"}, "'eval_dataset_name' is not set"),
        ({"eval_dataset_split": "validation"}, "'eval_dataset_split' is set but 'eval_dataset_name' is not"),
        ({**EVAL, "eval_strategy": "no"}, "evaluation never runs"),
        ({**EVAL, "eval_dataset_size": None}, "needs 'eval_dataset_size'"),
        ({**EVAL, "eval_dataset_size": "four"}, "'eval_dataset_size' must be"),
        (
            {**EVAL, "eval_strategy": "no", "eval_on_start": True, "num_generations_eval": 3},
            "divisible by 'num_generations_eval' 3",
        ),
    ]
    for changes, message in cases:
        with pytest.raises(RecipeError, match=message):
            load_recipe(write_recipe(changes))
    ok = load_recipe(write_recipe(EVAL))
    assert ok.script.eval_dataset_size == 4 and ok.training.num_generations_eval == 4


@pytest.mark.slow
def test_eval_prompts_through_the_training_loader(write_recipe, tmp_path):
    from open_grpo.data.tiny_model import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    generated = load_recipe(write_recipe(EVAL)).script
    prompts = load_eval_prompts(generated, tokenizer, seed=42)
    assert len(prompts) == 4 and prompts[0]["prompt"][0]["role"] == "system"
    train = load_recipe(write_recipe({"dataset_size": 4})).script
    from open_grpo.data.prompts import load_prompts

    assert [p["prompt"] for p in prompts] != [p["prompt"] for p in load_prompts(train, tokenizer, seed=42)]

    data = tmp_path / "eval.jsonl"  # other column names than the training set's, mapped by the eval keys
    data.write_text("\n".join(json.dumps({"question": f"q{i}", "answer": str(i)}) for i in range(5)))
    local = {"eval_dataset_name": str(data), "eval_prompt_column": "question", "eval_solution_column": "answer",
             "eval_dataset_size": 3, "eval_on_start": True}  # fmt: skip
    prompts = load_eval_prompts(load_recipe(write_recipe(local)).script, tokenizer, seed=42)
    assert [p["prompt"][-1]["content"] for p in prompts] == ["q0", "q1", "q2"]
    assert list(prompts["solution"]) == ["0", "1", "2"]
    with pytest.raises(RecipeError, match="has no column") as e:
        load_eval_prompts(load_recipe(write_recipe({**local, "eval_prompt_column": None})).script, tokenizer, 42)
    assert "Set 'eval_prompt_column' / 'eval_solution_column'" in str(e.value)  # the keys that name its columns


def test_eval_and_training_set_problems_come_together(write_recipe, tmp_path):
    """An eval set without the training set's columns and a training set with an empty prompt: one message with
    both, naming the eval set's own keys."""
    from open_grpo import train

    rows = [{"problem": p, "solution": "1"} for p in ("1 + 0?", "", "0 + 1?")]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": "2 + 2?", "answer": "4"}) + "\n")
    recipe = write_recipe({"dataset_name": str(tmp_path / "train.jsonl"), "eval_dataset_name": str(tmp_path / "eval.jsonl"),
                           "eval_on_start": True}, drop=["dataset_size"])  # fmt: skip
    with pytest.raises(RecipeError) as e:
        train.main(str(recipe))
    eval_problem, train_problem = e.value.problems
    assert "eval set" in eval_problem and "no column(s) ['problem', 'solution']" in eval_problem
    assert "'eval_prompt_column' / 'eval_solution_column'" in eval_problem
    assert "1 of 3 rows" in train_problem and "null or empty 'problem'" in train_problem


def correct_first(completions, *, k: int = 4, **columns) -> list[float]:
    """A 0/1 test reward: in each group of k completions, the first int(solution) are correct."""
    return [float(i % k < (int(s) if s.isdigit() else 0)) for i, s in enumerate(columns["solution"])]


@pytest.mark.slow
def test_tiny_run_logs_eval_rows(monkeypatch, write_recipe, tmp_path):
    monkeypatch.setitem(
        registry._loaded, "correct_first", registry.RewardInfo("correct_first", correct_first, "tests", "tests:x")
    )
    data = tmp_path / "eval.jsonl"
    data.write_text("\n".join(json.dumps({"problem": f"Say {s}.", "solution": s}) for s in ("0", "1", "2", "4")))
    recipe = write_recipe({
        "max_steps": 2, "dataset_size": 16, "max_completion_length": 8, "eval_dataset_name": str(data),
        "eval_strategy": "steps", "eval_steps": 2, "eval_on_start": True, "num_generations_eval": 4,
        "per_device_eval_batch_size": 16,
        "rewards": [{"name": "lowercase_letters"}, {"name": "correct_first"}],
    })  # fmt: skip
    result = main(str(recipe))

    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward" in r]
    evals = [r for r in rows if "eval/reward" in r]
    assert [r["step"] for r in train] == [1, 2]  # one row per training step
    assert [r["step"] for r in evals] == [0, 2]  # eval_on_start, then every eval_steps
    assert not any(k.startswith("eval") for r in train for k in r)
    for r in evals:
        # groups of 4 with 0, 1, 2, 4 correct: pass@1 = mean(c / 4), pass@4 = share of groups with one correct
        assert r["eval/rewards/correct_first/pass@1"] == pytest.approx((0 + 1 + 2 + 4) / 16)
        assert r["eval/rewards/correct_first/pass@4"] == pytest.approx(3 / 4)
        assert r["eval/rewards/correct_first/mean"] == pytest.approx(7 / 16)
        assert "eval/rewards/lowercase_letters/mean" in r and "eval/rewards/lowercase_letters/pass@1" not in r
        assert r["eval/rewards/lowercase_letters/none_frac"] == 0 and "eval/loss" in r
    # evaluation stays out of the training steps' telemetry: 8 completions per step, not 8 + 16
    step1 = train[0]
    assert step1["throughput/completions_per_s_per_gpu"] * step1["time/step"] == pytest.approx(8)
    assert result["eval"]["eval/rewards/correct_first/pass@4"] == (0, 0.75, 2, 0.75)
