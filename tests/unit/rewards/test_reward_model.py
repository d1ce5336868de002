"""`reward_model`: recipe checks, the model TRL runs, the memory plan's `reward_models`, and a CPU GRPO run with it."""

import json

import pytest

from open_grpo.data.models import resolve_model
from open_grpo.planning.preflight import ZERO_STAGE
from open_grpo.planning.recipe_plan import plan_recipe
from open_grpo.recipe import load_recipe
from open_grpo.rewards.registry import RewardSpecError, build_rewards, parse_reward_specs
from open_grpo.rewards.reward_model import planned_reward_models
from tests.support.tiny_reward_model import save_tiny_reward_model


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory):
    return save_tiny_reward_model(tmp_path_factory.mktemp("rm") / "tiny-rm")


def _problems(entry) -> list[str]:
    with pytest.raises(RewardSpecError) as e:
        parse_reward_specs([entry])
    return e.value.problems


def test_a_reward_model_folder_or_hub_id_parses(rm_path):
    spec = parse_reward_specs([{"name": "reward_model", "path": str(rm_path), "weight": 0.5}])[0]
    assert (spec.name, spec.weight, spec.params) == ("reward_model", 0.5, {"path": str(rm_path)})
    assert parse_reward_specs([{"name": "reward_model", "path": "Skywork/Skywork-Reward-V2-Qwen3-0.6B"}])


def test_reward_model_entries_checked_together(rm_path, tmp_path):
    assert _problems({"name": "reward_model"}) == ["rewards[0] (reward_model): parameter 'path' is required"]
    typo = _problems({"name": "reward_model", "pth": str(rm_path)})
    assert any("unknown parameter 'pth'. Did you mean 'path'?" in p for p in typo)
    for path in ("./no/such/folder", "not a hub id", "a/b/c"):
        (problem,) = _problems({"name": "reward_model", "path": path})
        assert f"'path' {path!r} is neither a local folder nor a hub id" in problem
    (problem,) = _problems({"name": "reward_model", "path": str(rm_path), "dtype": "fp8"})
    assert "'dtype' must be one of auto, bfloat16, float16, float32" in problem
    both = _problems({"name": "reward_model", "path": str(rm_path), "time_limit": 5, "on_error": "zero"})
    assert len(both) == 2 and all("does not apply: TRL's trainer runs this reward" in p for p in both)


def test_a_folder_that_is_no_reward_model_is_refused(tmp_path):
    (problem,) = _problems({"name": "reward_model", "path": resolve_model("random:tiny")})
    assert "Qwen2ForCausalLM checkpoint, not a sequence classifier" in problem
    (problem,) = _problems({"name": "reward_model", "path": str(tmp_path)})
    assert "has no config.json" in problem
    bare = save_tiny_reward_model(tmp_path / "no-template", chat_template=False)
    (problem,) = _problems({"name": "reward_model", "path": str(bare)})
    assert "has no chat template" in problem
    config = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({**config, "id2label": {"0": "bad", "1": "good"}}))
    assert any("has 2 labels" in p for p in _problems({"name": "reward_model", "path": str(bare)}))


def test_build_gives_trl_a_one_label_classifier_named_after_the_reward(rm_path):
    from transformers import PreTrainedModel

    specs = parse_reward_specs([{"name": "lowercase_letters"}, {"name": "reward_model", "path": str(rm_path)}])
    funcs, weights = build_rewards(specs)
    assert weights == [1.0, 1.0]
    assert funcs[0].__name__ == "lowercase_letters"
    model = funcs[1]
    assert isinstance(model, PreTrainedModel) and model.config.num_labels == 1 and model.__name__ == "reward_model"


def test_memory_plan_counts_reward_models(rm_path, write_recipe):
    recipe = load_recipe(
        write_recipe(
            {
                "use_cpu": False,
                "rewards": [{"name": "reward_model", "path": str(rm_path)}, {"name": "lowercase_letters"}],
            }
        )
    )
    (size,), notes = planned_reward_models(parse_reward_specs(recipe.script.rewards))
    assert notes == []
    from transformers import AutoModelForSequenceClassification

    assert size.params == AutoModelForSequenceClassification.from_pretrained(rm_path).num_parameters()
    assert size.dtype == "float32"
    kw = dict(nodes=1, gpu_mem_gib=80)
    ddp = plan_recipe(recipe, gpus_per_node=4, zero_stage=ZERO_STAGE["ddp"], **kw)
    zero3 = plan_recipe(recipe, gpus_per_node=4, zero_stage=ZERO_STAGE["zero3"], **kw)
    assert ddp.data["memory_gib"]["reward_models"] == round(4 * size.params / 2**30, 2)  # a float32 copy per GPU
    assert zero3.data["memory_gib"]["reward_models"] == round(2 * size.params / 4 / 2**30, 2)  # bf16, sharded by 4
    assert "reward_models" in ddp.render()


def test_memory_plan_says_when_it_cannot_size_a_reward_model(write_recipe):
    recipe = load_recipe(
        write_recipe({"use_cpu": False, "rewards": [{"name": "reward_model", "path": "someone/unseen-rm"}]})
    )
    result = plan_recipe(recipe, gpus_per_node=1, nodes=1, gpu_mem_gib=80, zero_stage=0)
    assert "reward_models" not in result.data["memory_gib"]
    assert any("reward model 'someone/unseen-rm' left out of the memory plan" in w for w in result.warnings)


@pytest.mark.slow
def test_cpu_grpo_run_with_a_reward_model(rm_path, write_recipe, tmp_path):
    """TRL's sequence-classification path scores every completion; its metrics carry the recipe's name."""
    from open_grpo.train import main

    rewards = [{"name": "lowercase_letters"}, {"name": "reward_model", "path": str(rm_path), "weight": 0.5}]
    main(str(write_recipe({"max_steps": 2, "dataset_size": 16, "rewards": rewards, "log_completions": True})))
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert r["rewards/reward_model/mean"] != 0.0 and r["rewards/reward_model/std"] > 0  # a random head's scores
        assert "rewards/lowercase_letters/mean" in r
    logged = [json.loads(line) for line in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert all(isinstance(row["rewards"]["reward_model"], float) for row in logged)


def test_listing_marks_required_parameters(capsys):
    from open_grpo.cli import main

    assert main(["rewards"]) == 0
    out = capsys.readouterr().out
    assert "parameters: path, dtype='auto'" in out
    assert "parameters: base_url, model, prompt_template='Grade the answer to the question below.... (" in out
