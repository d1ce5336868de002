"""The colocation-aware trainer against a test double of vLLM's engine (CPU): engine kwargs, max model length,
weight sync, prompt slicing and the logged metrics."""

import json

import pytest

from open_grpo.train import main
from open_grpo.trainer import engine_kwargs_applied

from . import fake_vllm


@pytest.mark.slow
def test_colocated_steps_with_engine_double(monkeypatch, write_recipe, tmp_path):
    fake = fake_vllm.install(monkeypatch)
    recipe = write_recipe(
        {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_engine_kwargs": {"max_num_seqs": 4, "enable_prefix_caching": True, "max_num_batched_tokens": 2048},
            "max_steps": 2,
            "dataset_size": 32,
        }
    )
    main(str(recipe))
    (llm,) = fake.instances
    kw = llm.kwargs
    assert kw["max_num_seqs"] == 4 and kw["enable_prefix_caching"] is True and kw["max_num_batched_tokens"] == 2048
    assert kw["max_model_len"] == 128 + 16  # max_prompt_tokens + max_completion_length, set by the trainer
    assert kw["distributed_executor_backend"] == "external_launcher" and kw["tensor_parallel_size"] == 1
    # on-policy: weights pushed before each step's generation, every parameter by its vLLM name
    assert len(llm.generate_calls) == 2 and "model.embed_tokens.weight" in llm.loaded
    assert all(len(call) == 8 for call in llm.generate_calls)  # one rank: all 8 completions (1 prompt x 8) here
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2
    assert all(r["time/generation"] > 0 and r["time/weight_sync"] > 0 for r in steps)
    assert all(r["completions/mean_length"] == 16 for r in steps)


def test_engine_kwargs_restore_module(monkeypatch):
    fake = fake_vllm.install(monkeypatch)
    import trl.generation.vllm_generation as gen

    with engine_kwargs_applied({"enforce_eager": True}):
        gen.LLM(model="m", max_num_seqs=2)
    assert gen.LLM is fake
    assert fake.instances[-1].kwargs == {"model": "m", "max_num_seqs": 2, "enforce_eager": True}
