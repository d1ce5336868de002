"""Bad recipes fail with clear errors before any model, dataset or GPU is touched."""

import pytest

from open_grpo.recipe import RecipeError, load_recipe


def test_unknown_recipe_lists_available():
    with pytest.raises(RecipeError) as e:
        load_recipe("qwen-math-15b")
    assert "did you mean 'qwen-math-1.5b'" in str(e.value).lower() and "demo" in str(e.value)


def test_unknown_key_names_key_and_file(write_recipe):
    path = write_recipe({"learning_rat": 0.1, "num_generation": 4})
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert str(path) in msg and "'learning_rat'" in msg and "'learning_rate'" in msg and "'num_generation'" in msg


def test_wrong_type(write_recipe):
    with pytest.raises(RecipeError, match="'num_generations' must be int"):
        load_recipe(write_recipe({"num_generations": "eight"}))
    with pytest.raises(RecipeError, match="'use_vllm' must be bool"):
        load_recipe(write_recipe({"use_vllm": "maybe"}))


def test_yaml_scientific_notation_string_is_fine(write_recipe):
    # PyYAML reads 3e-6 (no dot) as a string; it is still a valid float.
    assert load_recipe(write_recipe({"learning_rate": "3e-6"})).training.learning_rate == 3e-6


def test_num_generations_must_divide_generation_batch(write_recipe):
    with pytest.raises(RecipeError, match="divisible by 'num_generations' 3"):
        load_recipe(write_recipe({"num_generations": 3, "per_device_train_batch_size": 8}))


def test_trust_remote_code_needs_pinned_revision(write_recipe):
    with pytest.raises(RecipeError, match="model_revision"):
        load_recipe(write_recipe({"trust_remote_code": True}))
    ok = load_recipe(write_recipe({"trust_remote_code": True, "model_revision": "0123abcd"}))
    assert ok.model.model_revision == "0123abcd"


def test_unknown_reward_suggests(write_recipe):
    with pytest.raises(RecipeError, match="Unknown reward 'acuracy'. Did you mean 'accuracy'"):
        load_recipe(write_recipe({"rewards": [{"name": "acuracy"}]}))


def test_all_problems_reported_together(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({"bogus": 1, "num_generations": "x", "max_steps": "many"}))
    assert len(e.value.problems) == 3


def test_seed_reward_funcs_form(write_recipe):
    r = load_recipe(
        write_recipe({"reward_funcs": ["format", "tag_count"], "reward_weights": [1.0, 0.5]}, drop=["rewards"])
    )
    assert r.script.reward_funcs == ["format", "tag_count"]
    with pytest.raises(RecipeError, match="reward_weights"):
        load_recipe(write_recipe({"reward_funcs": ["format"], "reward_weights": [1.0, 2.0]}, drop=["rewards"]))


def test_allreduce_fusion_choice_is_checked(write_recipe):
    with pytest.raises(RecipeError, match="'vllm_allreduce_fusion' must be one of auto, off, trtllm, vllm"):
        load_recipe(write_recipe({"vllm_allreduce_fusion": "fast"}))
    assert load_recipe(write_recipe({"vllm_allreduce_fusion": "trtllm"})).training.vllm_allreduce_fusion == "trtllm"
