"""GPU tests of the reward model (marked `gpu`, skipped without CUDA and vLLM): `pytest -m gpu tests/test_gpu_reward_model.py`.

A tiny random reward model scores completions of colocated GRPO steps on one GPU (TRL moves it to the GPU); on two
GPUs, with FSDP2 and with ZeRO-3, TRL shards it with the policy, and the FSDP2 run's weight sync and save work.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT
from tests.support.tiny_reward_model import save_tiny_reward_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM"),
]


def _recipe(write_recipe, tmp_path, **changes):
    data = tmp_path / "train.jsonl"
    data.write_text(
        "\n".join(json.dumps({"problem": f"What is {i} + {i}?", "solution": str(2 * i)}) for i in range(64))
    )
    rm = save_tiny_reward_model(tmp_path / "tiny-rm")
    return write_recipe(
        {
            "dataset_name": str(data),
            "model_name_or_path": "random:0.5b",
            "dtype": "bfloat16",
            "use_cpu": False,
            "bf16": True,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.25,
            "max_completion_length": 32,
            "max_steps": 2,
            "rewards": [{"name": "lowercase_letters"}, {"name": "reward_model", "path": str(rm), "weight": 0.1}],
            **changes,
        }
    )


def _steps(out) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "reward" in r]


def test_reward_model_scores_on_one_gpu(write_recipe, tmp_path):
    from open_grpo.train import main

    main(str(_recipe(write_recipe, tmp_path)))
    steps = _steps(tmp_path / "out")
    assert len(steps) == 2
    assert all(r["rewards/reward_model/std"] > 0 and r["rewards/reward_model/none_frac"] == 0 for r in steps)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("accelerate", ["fsdp2", "zero3"])
def test_two_gpus_shard_the_reward_model(write_recipe, tmp_path, accelerate):
    from safetensors.torch import load_file

    from open_grpo.data.models import resolve_model

    recipe = _recipe(write_recipe, tmp_path)
    before = load_file(f"{resolve_model('random:0.5b')}/model.safetensors")  # built here, not by both ranks
    config = ROOT / "accelerate_configs" / f"{accelerate}.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
              "-m", "open_grpo.train", "--config", str(recipe)]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0,1")}
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "out"
    steps = _steps(out)
    assert len(steps) == 2 and all(r["rewards/reward_model/std"] > 0 for r in steps)
    assert all(r["time/weight_sync"] > 0 for r in steps)
    if accelerate == "fsdp2":  # FULL_STATE_DICT: one plain model file
        after = load_file(out / "model.safetensors")
        assert any(not torch.equal(before[k], after[k].to(before[k].dtype)) for k in before if k in after)
