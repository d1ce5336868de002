"""`open-grpo check`: layout, batch arithmetic and memory plan, with every problem listed."""

import pytest

from open_grpo.cli import main as cli
from open_grpo.config import load_recipe
from open_grpo.preflight import model_facts, plan


@pytest.fixture(scope="module")
def seed():
    return load_recipe("qwen-math-1.5b", for_planning=True)


def _plan(recipe, gpus=8, nodes=1, mem=80, zero=3, **changes):
    t = recipe.training
    saved = {k: getattr(t, k) for k in changes}
    for k, v in changes.items():
        setattr(t, k, v)
    try:
        return plan(t, recipe.script.max_prompt_tokens, model_facts(recipe.model.model_name_or_path),
                    gpus_per_node=gpus, nodes=nodes, gpu_mem_gib=mem, zero_stage=zero)  # fmt: skip
    finally:
        for k, v in saved.items():
            setattr(t, k, v)


def test_seed_plan_ok(seed):
    p = _plan(seed)
    assert not p.errors
    text = p.render()
    assert "world size 8" in text and "128 completions = 16 prompts x 8 generations" in text


def test_param_count_matches_qwen25_15b():
    assert model_facts("Qwen/Qwen2.5-Math-1.5B").num_params == pytest.approx(1.54e9, rel=0.01)
    assert model_facts("Qwen/Qwen2.5-Math-7B").num_params == pytest.approx(7.62e9, rel=0.01)


def test_tp_groups_consecutive(seed):
    text = _plan(seed, vllm_tensor_parallel_size=2).render()
    assert "[0, 1], [2, 3], [4, 5], [6, 7]" in text


def test_world_not_multiple_of_tp(seed):
    assert any("not a multiple" in e for e in _plan(seed, gpus=6, vllm_tensor_parallel_size=4).errors)


def test_tp_group_spanning_nodes(seed):
    errors = _plan(seed, gpus=2, nodes=2, vllm_tensor_parallel_size=4).errors
    assert any("span" in e for e in errors)


def test_heads_must_divide(seed):
    assert any("attention heads" in e for e in _plan(seed, vllm_tensor_parallel_size=8).errors)


def test_max_model_length_too_small(seed):
    assert any("vllm_max_model_length 1024" in e for e in _plan(seed, vllm_max_model_length=1024).errors)


def test_kv_cache_too_small(seed):
    assert any("KV cache" in e for e in _plan(seed, vllm_gpu_memory_utilization=0.04).errors)


def test_over_memory(seed):
    assert any("exceed" in e for e in _plan(seed, mem=40, vllm_gpu_memory_utilization=0.9).errors)


def test_all_problems_listed_together(seed):
    p = _plan(seed, gpus=6, vllm_tensor_parallel_size=4, vllm_max_model_length=100)
    assert len(p.errors) >= 2


def test_warnings(seed):
    assert any("TP 2 on a model that fits" in w for w in _plan(seed, vllm_tensor_parallel_size=2).warnings)
    assert any("ZeRO-3" in w for w in _plan(seed).warnings)
    assert not any("ZeRO-3" in w for w in _plan(seed, zero=2).warnings)


def test_cli_exit_codes(capsys):
    assert cli(["check", "qwen-math-1.5b"]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli(["check", "qwen-math-1.5b", "--gpus-per-node", "6", "--vllm_tensor_parallel_size", "4"]) == 1
    out = capsys.readouterr().out
    assert "ERROR: world size 6 is not a multiple" in out
