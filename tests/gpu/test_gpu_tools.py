"""GPU test (marked `gpu`, skipped without CUDA and vLLM) of tool-using rollouts on the colocated engine: the shape
of recipes/qwen-tools-arith.yaml on a small random-weight Qwen2 for a few steps, through `open_grpo.train`.

A random model never calls a tool, so the engine's first-turn outputs are replaced, for half the completions, by a
call to `run_python`; TRL's tool loop then runs it (open_grpo.sandbox where installed, else the test double) and the
real engine generates the turn after the tool result. Checked: the steps run (no hang), the tool metrics and the
calls in completions.jsonl, and the engine's context widened for the tool schemas.

    pytest -m gpu tests/test_gpu_tools.py
"""

import importlib.util
import json

import pytest
import torch

from tests.support import fake_sandbox

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM"),
]


def test_colocated_tool_rollouts(monkeypatch, write_recipe, tmp_path):
    from open_grpo.train import main
    from tests.unit.environments.test_tools_train import script_engine_tool_calls

    if importlib.util.find_spec("open_grpo.sandbox") is None:  # the sandbox package not merged yet: its double
        fake_sandbox.install(monkeypatch)
    turns = script_engine_tool_calls(monkeypatch)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} * 7?", "solution": str(7 * i)}) + "\n"
                            for i in range(64)))  # fmt: skip
    recipe = write_recipe({
        "dataset_name": str(data), "model_name_or_path": "random:0.5b", "dtype": "bfloat16", "use_cpu": False,
        "bf16": True, "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.25,
        "environment": {"name": "python_exec", "wall_s": 5.0, "max_output_chars": 500},
        "max_tool_calling_iterations": 2, "max_completion_length": 96, "max_steps": 3,
        "rewards": [{"name": "accuracy"}], "log_completions": True, "num_completions_to_print": 0,
    })  # fmt: skip
    main(str(recipe))
    out = tmp_path / "out"

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 3 and 1 in turns  # the engine generated after tool results
    for r in steps:
        assert r["tools/run_python/calls_per_completion"] >= 0.5 and "tools/run_python/failure_rate" in r
        assert r["tools/call_frequency"] >= 0.5 and r["time/generation"] > 0
    engine = json.loads((out / "vllm_engine.json").read_text())
    assert engine["max_model_len"] > 128 + 96  # max_prompt_tokens + completion, widened by the tool schema's tokens
    log = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    called = [r for r in log if r.get("tool_calls")]
    assert called and all(r["tool_calls"][0]["result"] == "42\n" for r in called)
