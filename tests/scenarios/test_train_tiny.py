"""A tiny-model GRPO run on CPU, through the same code path as any recipe: parameters change, metrics are logged."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from open_grpo.data.models import resolve_model
from open_grpo.train import main
from tests.conftest import ROOT


@pytest.mark.slow
def test_tiny_grpo_run(write_recipe, tmp_path):
    recipe = write_recipe({"max_steps": 3, "dataset_size": 64})
    result = main(str(recipe))
    out = tmp_path / "out"

    before = load_file(f"{resolve_model('random:tiny')}/model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no parameter changed"

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("rewards/lowercase_letters/mean", "time/step", "time/generation", "time/rewards", "time/train",
                "throughput/completion_tokens_per_s_per_gpu", "throughput/completions_per_s_per_gpu",
                "rewards/lowercase_letters/none_frac", "loss"):  # fmt: skip
        assert all(key in r for r in steps), key
    assert all(r["throughput/completions_per_s_per_gpu"] > 0 for r in steps)
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert result["steps"] == 3


@pytest.mark.slow
def test_third_party_plugin_trains(write_recipe, tmp_path):
    """Install examples/reward-plugin into a throwaway environment and train with it from a recipe."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, str(ROOT / "examples" / "reward-plugin")], check=True, capture_output=True)
    recipe = write_recipe(
        {"max_steps": 2, "dataset_size": 32, "rewards": [{"name": "short_answer", "target_chars": 30}]}
    )
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    import os

    env["OPEN_GRPO_CACHE"] = os.environ["OPEN_GRPO_CACHE"]
    listing = subprocess.run(
        [sys.executable, "-m", "open_grpo.cli", "rewards"], env=env, capture_output=True, text=True
    )
    assert "short_answer  [open-grpo-example-plugin" in listing.stdout and "target_chars=40" in listing.stdout
    run = subprocess.run([sys.executable, "-m", "open_grpo.train", "--config", str(recipe)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/short_answer/mean" in r for r in rows)
