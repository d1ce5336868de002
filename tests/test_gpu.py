"""GPU tests (marked `gpu`, skipped without CUDA and vLLM): run on a GPU machine with `pytest -m gpu`.

A few colocated GRPO steps on a small random-weight Qwen2 (Qwen2.5-0.5B shape) through `open_grpo.train`, and the
recipe's `vllm_engine_kwargs` reaching the real engine.
"""

import importlib.util
import json

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM"),
]


def test_colocated_steps_and_engine_kwargs(write_recipe, tmp_path):
    from safetensors.torch import load_file

    from open_grpo.models import resolve_model
    from open_grpo.train import main

    data = tmp_path / "train.jsonl"  # local data: no reasoning-gym needed
    data.write_text(
        "\n".join(json.dumps({"problem": f"What is {i} + {i}?", "solution": str(2 * i)}) for i in range(64))
    )
    recipe = write_recipe(
        {
            "dataset_name": str(data),
            "model_name_or_path": "random:0.5b",
            "dtype": "bfloat16",
            "use_cpu": False,
            "bf16": True,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.25,
            "vllm_engine_kwargs": {"max_num_seqs": 24, "max_num_batched_tokens": 3072, "enable_prefix_caching": False},
            "max_completion_length": 64,
            "learning_rate": 1.0e-5,
            "max_steps": 3,
        }
    )
    main(str(recipe))
    out = tmp_path / "out"
    engine = json.loads((out / "vllm_engine.json").read_text())
    assert engine["max_num_seqs"] == 24 and engine["max_num_batched_tokens"] == 3072
    assert engine["enable_prefix_caching"] is False
    assert engine["max_model_len"] == 128 + 64  # set by the trainer from the recipe's limits

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 3
    assert all(r["time/generation"] > 0 and r["time/weight_sync"] > 0 and r["memory/peak_gib"] > 0 for r in steps)
    assert all(r["completions/mean_length"] > 0 for r in steps)

    before = load_file(f"{resolve_model('random:0.5b')}/model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
