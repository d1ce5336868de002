"""`gradient_checkpointing: auto`: the recipe value, overrides, and the choice from the memory plan."""

import pytest

from open_grpo import activation_checkpointing, preflight
from open_grpo.activation_checkpointing import decide, take_auto
from open_grpo.config import load_recipe


@pytest.mark.parametrize(
    "value, overrides, auto, kept",
    [
        ("auto", [], True, ["--gradient_checkpointing", "true"]),
        ("auto", ["--gradient_checkpointing", "false"], False, ["--gradient_checkpointing", "false"]),
        (
            "auto",
            ["--gradient_checkpointing=false", "--seed", "1"],
            False,
            ["--gradient_checkpointing=false", "--seed", "1"],
        ),
        (True, ["--gradient_checkpointing", "auto"], True, ["--gradient_checkpointing", "true"]),
        (
            True,
            ["--gradient_checkpointing=auto", "--seed", "1"],
            True,
            ["--seed", "1", "--gradient_checkpointing", "true"],
        ),
        (False, ["--seed", "1"], False, ["--seed", "1"]),
        ("auto", ["--gradient_checkpointing", "--seed", "1"], False, ["--gradient_checkpointing", "--seed", "1"]),
    ],
)
def test_take_auto_last_value_wins(value, overrides, auto, kept):
    config, words, is_auto = take_auto({"gradient_checkpointing": value}, overrides)
    assert is_auto == auto and words == kept
    assert config["gradient_checkpointing"] in (True, False)  # TRL's bool, for the type check


def test_reference_recipe_is_auto():
    r = load_recipe("qwen-math-1.5b", for_planning=True)
    assert r.script.gradient_checkpointing_auto and r.training.gradient_checkpointing is True
    r = load_recipe("qwen-math-1.5b", ["--gradient_checkpointing", "false"], for_planning=True)
    assert not r.script.gradient_checkpointing_auto and r.training.gradient_checkpointing is False
    assert not load_recipe("demo").script.gradient_checkpointing_auto


@pytest.mark.parametrize("card_gib, expected", [(141, False), (80, True)])
@pytest.mark.parametrize("kv_cache", ["fraction", "auto"])
def test_decided_by_the_memory_plan(monkeypatch, card_gib, expected, kv_cache):
    """The 1.5B recipe on one GPU: an H200 holds it without checkpointing, an 80 GB card does not (its activations
    alone are ~67 GiB without checkpointing), whether vLLM takes 30% of the card or only what its batch needs."""
    from open_grpo.memory_plan import EngineMemory

    r = load_recipe("qwen-math-1.5b", for_planning=True)
    facts = preflight.model_facts("Qwen/Qwen2.5-Math-1.5B")
    planned = []

    def plan_on_card(training, max_prompt_tokens, model_path, engine=None):
        planned.append(engine)
        return preflight.plan(training, max_prompt_tokens, facts, gpus_per_node=1, nodes=1, gpu_mem_gib=card_gib,
                              zero_stage=0, engine=engine)  # fmt: skip

    monkeypatch.setattr(preflight, "runtime_plan", plan_on_card)
    engine = EngineMemory(kv_cache=kv_cache)
    why = decide(r.training, r.script.max_prompt_tokens, "Qwen/Qwen2.5-Math-1.5B", engine)
    assert planned == [engine]  # planned with the engine's memory options
    assert r.training.gradient_checkpointing is expected
    assert ("off" if not expected else "on") in why


def test_no_plan_keeps_it_on(monkeypatch):
    r = load_recipe("qwen-math-1.5b", for_planning=True)
    monkeypatch.setattr(preflight, "runtime_plan", lambda *a, **k: None)  # no GPU here
    assert "on" in decide(r.training, 512, "random:tiny") and r.training.gradient_checkpointing is True
    assert activation_checkpointing.AUTO == "auto"
