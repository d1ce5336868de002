"""The colocated engine's max_num_batched_tokens stays within what vLLM 0.26's start-up dummy runs can address
(engine/batching.py): lowered from TRL's 4096 for small runs, a recipe value above it refused before any GPU."""

import pytest

from open_grpo.engine.batching import batched_tokens_problem, safe_engine_kwargs
from open_grpo.engine.colocated import engine_kwargs_applied
from open_grpo.errors import RecipeError
from open_grpo.recipe import load_recipe
from tests.support import fake_vllm

TRL_KWARGS = {"model": "m", "max_num_seqs": 8, "max_model_len": 160, "max_num_batched_tokens": 4096}


def test_trl_budget_lowered_for_a_small_run():
    kwargs, why = safe_engine_kwargs(TRL_KWARGS, user_set=False)
    assert kwargs["max_num_batched_tokens"] == 8 * 160 and "4096 -> 1280" in why


def test_large_runs_and_unknown_lengths_unchanged():
    big = {**TRL_KWARGS, "max_num_seqs": 16, "max_model_len": 1536}
    assert safe_engine_kwargs(big, user_set=False) == (big, None)
    no_len = {**TRL_KWARGS, "max_model_len": None}  # vLLM uses the model's own (long) context
    assert safe_engine_kwargs(no_len, user_set=False) == (no_len, None)


def test_user_budget_over_the_limit_raises():
    with pytest.raises(ValueError, match="max_num_batched_tokens 4096 is more than max_num_seqs 8"):
        safe_engine_kwargs(TRL_KWARGS, user_set=True)
    assert batched_tokens_problem(1280, 8, 160) is None


def test_engine_built_with_the_lowered_budget(monkeypatch):
    fake = fake_vllm.install(monkeypatch)
    import trl.generation.vllm_generation as gen

    with engine_kwargs_applied(None):
        gen.LLM(**TRL_KWARGS)
    assert fake.instances[-1].kwargs["max_num_batched_tokens"] == 1280


def test_recipe_with_an_unaddressable_budget_is_refused(write_recipe):
    recipe = write_recipe(
        {"use_vllm": True, "vllm_mode": "colocate", "vllm_engine_kwargs": {"max_num_batched_tokens": 4096}}
    )  # 8 sequences of 128 + 16 tokens per engine
    with pytest.raises(
        RecipeError, match=r"max_num_batched_tokens 4096 is more than max_num_seqs 8 x max_model_len 144"
    ):
        load_recipe(recipe)
