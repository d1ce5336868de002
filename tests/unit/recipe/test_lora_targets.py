"""The torch-free LoRA target check (recipe/lora_targets.py) against PEFT itself: the module names it derives from a
model's config equal the real model's, its matcher agrees with PEFT's on many patterns, and a target it refuses is
one PEFT (or TRL) refuses."""

import dataclasses

import pytest

from open_grpo.planning.model_shapes import SHAPES
from open_grpo.recipe.lora_targets import OTHER, adapted_modules, module_names, target_modules, target_problems

TINY = SHAPES["tiny"]
PATTERNS = [
    ["q_proj"], ["q_proj", "v_proj"], ["self_attn.q_proj"], ["layers.1.mlp.down_proj"], ["proj"], ["qproj"],
    ["mlp"], ["model.layers.0.self_attn.o_proj"], ["lm_head"], ["embed_tokens"], ["q_norm"],
    r".*\.1\..*_proj", r".*q_proj", "q_proj", r"model\.layers\.\d+\.mlp\.(gate|up)_proj", r".*(attn|mlp)",
    r"lm_head", r".*norm", r"model.*", r"layers\.0\..*",
]  # fmt: skip


def _real_model(model_type: str):
    """A real tiny model of each covered type, built from its transformers config class."""
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dataclasses.replace(TINY, model_type=model_type, vocab_size=64)
    kwargs = shape.config_kwargs()
    if model_type == "qwen3":
        kwargs["head_dim"] = kwargs["hidden_size"] // kwargs["num_attention_heads"]
    return shape, AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs))


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "mistral", "qwen3"])
def test_module_names_are_the_real_models(model_type):
    import torch

    shape, model = _real_model(model_type)
    real = {}
    for name, module in model.named_modules():
        if name:
            kind = "linear" if isinstance(module, torch.nn.Linear) else "embedding"
            real[name] = kind if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) else OTHER
    assert module_names(shape) == real


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3"])
@pytest.mark.parametrize("pattern", PATTERNS, ids=str)
def test_matcher_agrees_with_peft(model_type, pattern):
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    shape, model = _real_model(model_type)
    modules = module_names(shape)
    # open_grpo hands PEFT a bare module name as a one-item list (lora.peft_config, undoing TRL's ModelConfig)
    config = LoraConfig(target_modules=target_modules(pattern), modules_to_save=["embed_tokens"])
    peft = [name for name, _ in model.named_modules() if name and check_target_module_exists(config, name)]
    assert adapted_modules(modules, pattern, ["embed_tokens"]) == peft


@pytest.mark.parametrize("pattern", PATTERNS + ["all-linear", None], ids=str)
def test_refused_exactly_where_peft_or_trl_refuses(pattern):
    """get_peft_model raises for no match or an unsupported module; TRL 1.16 refuses an adapter on lm_head."""
    from peft import LoraConfig, get_peft_model

    shape, model = _real_model("qwen2")
    try:
        peft_model = get_peft_model(model, LoraConfig(target_modules=target_modules(pattern)))
        wrapped = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
        refused = "lm_head" in wrapped  # TRL's GRPOTrainer refuses this one at start-up
    except ValueError:
        refused = True
    problems = target_problems(shape, pattern, ["q_proj", "v_proj"])
    assert bool(problems) == refused, problems
    assert all("'lora_target_modules'" in p for p in problems)


def test_uncovered_model_types_are_not_judged():
    assert module_names(dataclasses.replace(TINY, model_type="gemma3")) is None
    assert target_problems(dataclasses.replace(TINY, model_type="gemma3"), ["nothing"], None) == []


def test_bad_regular_expression_is_named():
    (problem,) = target_problems(TINY, "(q_proj", ["q_proj", "v_proj"])
    assert "not a valid regular expression" in problem
