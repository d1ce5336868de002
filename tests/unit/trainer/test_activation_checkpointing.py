"""`gradient_checkpointing: auto`: the recipe value, overrides, and the choice from the memory plan."""

import pytest

from open_grpo.planning import preflight
from open_grpo.planning.recipe_plan import plan_recipe
from open_grpo.recipe import load_recipe
from open_grpo.trainer.activation_checkpointing import decide
from open_grpo.trainer.lora import peft_config, trainer_adapter_plan


@pytest.mark.parametrize(
    "value, overrides, auto",
    [
        ("auto", [], True),
        ("auto", ["--gradient_checkpointing", "false"], False),
        ("auto", ["--gradient_checkpointing=false", "--seed", "1"], False),
        (True, ["--gradient_checkpointing", "auto"], True),
        (True, ["--gradient_checkpointing=AUTO", "--seed", "1"], True),
        (False, ["--seed", "1"], False),
        ("auto", ["--gradient_checkpointing", "--seed", "1"], False),  # a bare flag: true
    ],
)
def test_last_value_wins(write_recipe, value, overrides, auto):
    r = load_recipe(write_recipe({"gradient_checkpointing": value}), overrides)
    assert r.training.gradient_checkpointing_auto == auto
    assert r.training.gradient_checkpointing is (auto or (value is not False and "false" not in str(overrides)))


def test_reference_recipe_is_auto():
    r = load_recipe("qwen-math-1.5b")
    assert r.training.gradient_checkpointing_auto and r.training.gradient_checkpointing is True
    r = load_recipe("qwen-math-1.5b", ["--gradient_checkpointing", "false"])
    assert not r.training.gradient_checkpointing_auto and r.training.gradient_checkpointing is False
    assert not load_recipe("demo").training.gradient_checkpointing_auto


@pytest.mark.parametrize("card_gib, expected", [(141, False), (80, True)])
@pytest.mark.parametrize("kv_cache", ["fraction", "auto"])
def test_decided_by_the_memory_plan(monkeypatch, card_gib, expected, kv_cache):
    """The 1.5B recipe on one GPU: an H200 holds it without checkpointing, an 80 GB card does not (its activations
    alone are ~67 GiB without checkpointing), whether vLLM takes 30% of the card or only what its batch needs."""
    from open_grpo.planning.memory_plan import EngineMemory

    r = load_recipe("qwen-math-1.5b")
    facts = preflight.model_facts("Qwen/Qwen2.5-Math-1.5B")
    planned = []

    def plan_on_card(training, model_path, engine=None, **configs):
        planned.append(engine)
        return preflight.plan(training, training.max_prompt_tokens, facts, gpus_per_node=1, nodes=1,
                              gpu_mem_gib=card_gib, zero_stage=0, engine=engine)  # fmt: skip

    monkeypatch.setattr(preflight, "runtime_plan", plan_on_card)
    engine = EngineMemory(kv_cache=kv_cache)
    why = decide(r.training, "Qwen/Qwen2.5-Math-1.5B", engine=engine)
    assert planned == [engine]  # planned with the engine's memory options
    assert r.training.gradient_checkpointing is expected
    assert ("off" if not expected else "on") in why


def test_no_plan_keeps_it_on(monkeypatch):
    r = load_recipe("qwen-math-1.5b")
    monkeypatch.setattr(preflight, "runtime_plan", lambda *a, **kw: None)  # no GPU here
    assert "on" in decide(r.training, "random:tiny") and r.training.gradient_checkpointing is True


def test_lora_decides_from_the_adapter_plan(monkeypatch):
    """7B on one 192 GiB card: full fine-tuning needs checkpointing, the LoRA run of the same recipe does not."""
    r = load_recipe("qwen-math-7b-lora", ["--gradient_checkpointing", "auto"])
    facts = preflight.model_facts("Qwen/Qwen2.5-Math-7B")

    def plan_on_card(training, model_path, peft_config=None, quantization_config=None, engine=None):
        adapter = trainer_adapter_plan(facts, peft_config, quantization_config)
        return preflight.plan(training, training.max_prompt_tokens, facts, gpus_per_node=1, nodes=1, gpu_mem_gib=192,
                              zero_stage=0, adapter=adapter)  # fmt: skip

    monkeypatch.setattr(preflight, "runtime_plan", plan_on_card)
    why = decide(r.training, "Qwen/Qwen2.5-Math-7B", peft_config(r.model), None)
    assert "off" in why and r.training.gradient_checkpointing is False
    assert "on" in decide(r.training, "Qwen/Qwen2.5-Math-7B")  # the full model's plan


@pytest.mark.parametrize("card_gib, expected", [(141, "off"), (80, "on")])
def test_check_says_what_auto_will_choose(card_gib, expected):
    r = load_recipe("qwen-math-1.5b")
    result = plan_recipe(r, gpus_per_node=1, nodes=1, gpu_mem_gib=card_gib, zero_stage=0)
    assert f"gradient_checkpointing: auto -> {expected}" in result.render()
    assert result.data["gradient_checkpointing"] is (expected == "on") and not result.errors
