"""Dynamic sampling: zero-variance groups are found, dropped and replaced by refilled ones; recipe checks."""

import json
from importlib.metadata import EntryPoint
from types import SimpleNamespace

import pytest
import torch

from open_grpo.recipe import RecipeError, load_recipe
from open_grpo.recipe.rules_training import dynamic_sampling_problems
from open_grpo.rewards import registry
from open_grpo.rewards.demo import lowercase_letters
from open_grpo.train import main
from open_grpo.trainer.dynamic_sampling import concat_rows, zero_variance
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer

GENERATIONS = 2


def flat_or_lowercase(completions, solution, **columns):
    """1.0 for every completion of a prompt whose solution is 'flat' (a zero-variance group); else lowercase share."""
    varied = lowercase_letters(completions)
    return [1.0 if s == "flat" else v for s, v in zip(solution, varied)]


def test_zero_variance_groups():
    rewards = [1.0, 1.0, 1.0, 1.0] + [0.0, 1.0, 0.0, 0.0] + [None, 0.5, None, None] + [None, 0.2, 0.2, 0.3]
    assert zero_variance(rewards, 4) == [True, False, True, False]  # one scored completion: no signal either


def test_concat_rows_repads_both_sides():
    a = {
        "prompt_ids": torch.tensor([[0, 5, 6], [7, 8, 9]]),
        "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
        "completion_ids": torch.tensor([[1, 2], [3, 0]]),
        "completion_mask": torch.tensor([[1, 1], [1, 0]]),
        "advantages": torch.tensor([0.5, -0.5]),
        "num_items_in_batch": torch.tensor(3),
    }
    b = {"prompt_ids": torch.tensor([[4]]), "prompt_mask": torch.tensor([[1]]),
         "completion_ids": torch.tensor([[1, 2, 3]]), "completion_mask": torch.tensor([[1, 1, 1]]),
         "advantages": torch.tensor([1.0]), "num_items_in_batch": torch.tensor(3)}  # fmt: skip
    out = concat_rows([(a, torch.tensor([1])), (b, torch.tensor([0]))], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[7, 8, 9], [0, 0, 4]] and out["prompt_mask"].tolist() == [
        [1, 1, 1],
        [0, 0, 1],
    ]
    assert out["completion_ids"].tolist() == [[3, 0, 0], [1, 2, 3]]
    assert out["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert out["advantages"].tolist() == [-0.5, 1.0] and "num_items_in_batch" not in out
    with pytest.raises(NotImplementedError, match="'pixel_values'"):
        concat_rows([({**a, "pixel_values": torch.zeros(2, 3)}, torch.tensor([0]))], pad_token_id=0)


def test_recipe_checks(write_recipe):
    load_recipe(write_recipe({"dynamic_sampling": True}))  # the demo's batch: 8 completions, 8 per prompt
    with pytest.raises(RecipeError) as e:
        load_recipe(
            write_recipe({"dynamic_sampling": True, "scale_rewards": "batch", "dynamic_sampling_max_rounds": 0})
        )
    msg = str(e.value)
    assert "'dynamic_sampling_max_rounds' must be at least 1" in msg
    assert "scale_rewards: group' or 'none'" in msg and "'batch'" in msg
    with pytest.raises(RecipeError, match="'dynamic_sampling' must be bool"):
        load_recipe(write_recipe({"dynamic_sampling": "yes"}))


def test_groups_must_not_straddle_ranks():
    # 2 ranks x 4 completions: TRL accepts 8 completions of 8 per prompt, but the group would span both ranks.
    training = SimpleNamespace(dynamic_sampling=True, per_device_train_batch_size=4, steps_per_generation=1,
                               generation_batch_size=None, gradient_accumulation_steps=1, num_generations=8,
                               scale_rewards="group", multi_objective_aggregation="sum_then_normalize")  # fmt: skip
    (problem,) = dynamic_sampling_problems(training, world=2)
    assert (
        "(per_device_train_batch_size x steps_per_generation = 4) to be a multiple of 'num_generations' (8)" in problem
    )
    training.per_device_train_batch_size = 16
    assert dynamic_sampling_problems(training, world=2) == []


def test_a_step_where_every_group_is_flat_says_so_once(monkeypatch, caplog):
    """Every group of the batch and of the refill round gets one reward: the step trains on zero-advantage padding
    only. The console says so once (rank 0), not only the padded_frac metric."""
    from open_grpo.trainer import dynamic_sampling
    from open_grpo.trainer.dynamic_sampling import DynamicSampler

    monkeypatch.setattr(dynamic_sampling, "latest_rows", lambda trainer, n: n)
    monkeypatch.setattr(dynamic_sampling, "totals", lambda n, weights: [1.0] * n)  # all the same reward

    def generate_and_score(inputs):
        n = len(inputs)
        return {"prompt_ids": torch.ones(n, 2, dtype=torch.long), "prompt_mask": torch.ones(n, 2, dtype=torch.long),
                "completion_ids": torch.ones(n, 3, dtype=torch.long),
                "completion_mask": torch.ones(n, 3, dtype=torch.long), "advantages": torch.zeros(n)}  # fmt: skip

    accelerator = SimpleNamespace(gather=lambda t: t, device="cpu", process_index=0, num_processes=1)
    trainer = SimpleNamespace(accelerator=accelerator, reward_weights=torch.tensor([1.0]),
                              state=SimpleNamespace(global_step=6), train_dataset=[{"prompt": "p"}] * 4,
                              processing_class=SimpleNamespace(pad_token_id=0))  # fmt: skip
    for main_process, expected in ((False, 0), (True, 1)):
        accelerator.is_main_process = main_process
        caplog.clear()
        _, metrics = DynamicSampler(GENERATIONS, 1, seed=0).fill(trainer, [{"prompt": "p"}] * 4, generate_and_score)
        assert metrics["dynamic_sampling/padded_frac"] == 1.0 and metrics["dynamic_sampling/rounds"] == 1
        said = [r.getMessage() for r in caplog.records if "every group generated" in r.getMessage()]
        assert len(said) == expected
    assert "step 7" in said[0] and "does not move the policy" in said[0]


@pytest.fixture
def flat_reward(monkeypatch):
    """`flat_or_lowercase` registered through the entry-point group, as a plugin would be."""
    found = dict(registry._discover())
    found["flat_or_lowercase"] = [
        ("open-grpo-tests", EntryPoint("flat_or_lowercase", f"{__name__}:flat_or_lowercase", registry.GROUP))
    ]
    monkeypatch.setattr(registry, "_entry_points", found)


@pytest.mark.slow
def test_zero_variance_groups_are_replaced(write_recipe, tmp_path, monkeypatch, flat_reward):
    data = tmp_path / "half_flat.jsonl"
    rows = [{"problem": f"Say something about {i}.", "solution": "flat" if i % 2 else "varied"} for i in range(16)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = []  # per generation batch: (groups with all-zero advantages, padded_frac logged for it)
    original = OpenGRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        output = original(self, inputs)
        zero_groups = (output["advantages"].view(-1, GENERATIONS) == 0).all(dim=1).sum().item()
        trained.append((zero_groups, self._metrics["train"]["dynamic_sampling/padded_frac"][-1], len(inputs)))
        return output

    monkeypatch.setattr(OpenGRPOTrainer, "_generate_and_score_completions", spy)
    recipe = write_recipe(
        {"dataset_name": str(data), "rewards": [{"name": "flat_or_lowercase"}], "dynamic_sampling": True,
         "num_generations": GENERATIONS, "per_device_train_batch_size": 8, "max_completion_length": 8,
         "max_steps": 2, "save_final_model": False},
        drop=["dataset_size"],
    )  # fmt: skip
    main(str(recipe))

    steps = [r for r in map(json.loads, (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["dynamic_sampling/dropped_frac"] > 0 for r in steps)  # half the prompts give flat groups
    assert all(r["dynamic_sampling/rounds"] >= 1 for r in steps)
    assert len(trained) == 2
    for zero_groups, padded_frac, size in trained:
        assert size == 8  # the batch keeps its size
        assert zero_groups == round(padded_frac * 8 / GENERATIONS)  # only padding has zero advantage
    assert sum(z for z, _, _ in trained) <= 1  # without refills, about 2 of the 4 groups of a step would be flat


@pytest.mark.slow
def test_two_ranks_colocated(write_recipe, tmp_path):
    """Two CPU ranks, vLLM engine double: the ranks refill in step (matching collectives), each trains its own
    groups, and rank 0 alone writes every rank's completions to completions.jsonl."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    data = tmp_path / "half_flat.jsonl"
    rows = [{"problem": f"Say something about {i}.", "solution": "flat" if i % 2 else "varied"} for i in range(32)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = write_recipe(
        {"dataset_name": str(data), "rewards": [{"name": "flat_or_lowercase"}], "dynamic_sampling": True,
         "use_vllm": True, "vllm_mode": "colocate", "log_completions": True, "num_completions_to_print": 1,
         "num_generations": GENERATIONS, "per_device_train_batch_size": 8, "max_completion_length": 8,
         "max_steps": 2, "save_final_model": False},
        drop=["dataset_size"],
    )  # fmt: skip
    with socket.socket() as sock:  # a free port: a fixed one may be held by another run on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "tests" / "support" / "dynamic_sampling_main.py"), str(recipe), str(tmp_path), str(GENERATIONS)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # a hung rank (mismatched collectives): take the whole launcher group down
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-4000:]

    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    steps = [r for r in map(json.loads, (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and any(r["dynamic_sampling/rounds"] >= 1 for r in steps)
    written = [json.loads(line) for line in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    for step in (0, 1):
        r0, r1 = logs[0][step], logs[1][step]
        assert r0["size"] == r1["size"] == 8 and not set(r0["given"]) & set(r1["given"])  # own prompts per rank
        groups = 2 * 8 // GENERATIONS
        assert r0["zero_groups"] + r1["zero_groups"] == round(r0["padded_frac"] * groups)  # only padding is flat
        prompts = [r["prompt"] for r in written if r["step"] == step + 1]
        assert set(r0["given"] + r1["given"]) <= set(prompts)  # both ranks' first generation batch, from rank 0
        assert len(prompts) >= 16 and len(prompts) % GENERATIONS == 0
