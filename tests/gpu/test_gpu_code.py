"""GPU test of the code path (marked `gpu`): HumanEval prompts, the code_tests reward over the sandbox, vLLM colocated.

A random-weight model writes no code, so its reward is 0; the test checks that every completion was scored (the
`tests` column reached the reward through TRL's colocated path), the sandbox's canary held at start-up, and the
reward took a small part of the step. The real model: `recipes/qwen-coder-humaneval.yaml` (README).
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


def test_code_recipe_steps_on_the_colocated_engine(write_recipe, tmp_path, caplog):
    from open_grpo.train import main

    recipe = write_recipe(
        {
            "model_name_or_path": "random:0.5b",
            "dataset_name": "humaneval",
            "prompt_column": "problem",
            "solution_column": None,
            "system_prompt": None,
            "max_prompt_tokens": 1024,
            "rewards": [{"name": "code_tests", "mode": "fraction"}],
            "sandbox": {"backend": "auto", "wall_s": 5.0},
            "dtype": "bfloat16",
            "use_cpu": False,
            "bf16": True,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.25,
            "max_completion_length": 64,
            "max_steps": 3,
        }
    )
    with caplog.at_level("INFO"):
        main(str(recipe))
    assert "sandbox: " in caplog.text  # the backend in use and what it isolates
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 3
    assert all(r["rewards/code_tests/none_frac"] == 0.0 and r["rewards/code_tests/errors"] == 0 for r in steps)
    assert all(r["time/rewards"] < r["time/step"] for r in steps)
