"""LoRA / QLoRA through TRL's path: recipe keys validated, the adapter sized for the memory plan, trained, saved,
resumed, and merged into the weights pushed to the colocated engine."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file

from open_grpo.data.models import resolve_model
from open_grpo.planning.preflight import ZERO_STAGE, model_facts, plan
from open_grpo.recipe import RecipeError, load_recipe
from open_grpo.train import main
from open_grpo.trainer.lora import adapter_plan, lora_trainable_params, peft_config
from tests.support import fake_vllm

LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": "all-linear"}
ADAPTER = "base_model.model.model.layers.0.self_attn.q_proj.lora_{}.weight"  # PEFT's key in adapter_model.safetensors


def test_peft_key_without_use_peft_is_an_error(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({"lora_r": 64, "lora_target_modules": "all-linear", "load_in_4bit": True}))
    assert len(e.value.problems) == 3
    assert all("'use_peft' is false" in p and "set 'use_peft: true'" in p for p in e.value.problems)
    assert any("'lora_r: 64'" in p for p in e.value.problems)
    # a key left at ModelConfig's default is fine
    assert not load_recipe(write_recipe({"lora_r": 16})).model.use_peft


def test_lora_keys_checked(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({**LORA, "lora_r": 0, "lora_dropout": 1.5, "lora_target_modules": 3}))
    text = str(e.value)
    assert "'lora_target_modules' must be" in text
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({**LORA, "lora_r": 0, "lora_dropout": 1.5}))
    assert "'lora_r' must be a positive rank" in str(e.value) and "'lora_dropout' must be in [0, 1)" in str(e.value)


def test_qlora_refused_on_cpu_with_the_fix(write_recipe, tmp_path):
    with pytest.raises(RecipeError, match="'load_in_4bit: true'.*needs a CUDA GPU.*remove 'load_in_4bit'"):
        main(str(write_recipe({**LORA, "load_in_4bit": True})))
    assert not (tmp_path / "out").exists()  # refused before the run touched its output_dir
    # checking a QLoRA recipe for a GPU cluster works on any machine
    assert load_recipe(write_recipe({**LORA, "load_in_4bit": True})).model.load_in_4bit


def test_8bit_base_refused_with_vllm(write_recipe):
    with pytest.raises(RecipeError, match="vLLM cannot load a base model in 8-bit"):
        load_recipe(write_recipe({**LORA, "load_in_8bit": True, "use_vllm": True}))


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj"], ["q_proj", "down_proj"], None, r".*\.1\..*_proj"])
def test_target_modules_and_trainable_count_as_peft(write_recipe, targets):
    """What PEFT really wraps on the tiny model == what the memory plan counts (a one-item list included, which
    TRL's ModelConfig turns into a string)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    recipe = load_recipe(write_recipe({**LORA, "lora_target_modules": targets}))
    model = AutoModelForCausalLM.from_pretrained(resolve_model("random:tiny"))
    peft_model = get_peft_model(model, peft_config(recipe.model))
    trained = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    facts = model_facts("random:tiny")
    assert lora_trainable_params(facts, 4, recipe.model.lora_target_modules) == trained
    assert adapter_plan(facts, recipe.model).trainable_params == trained


def test_memory_plan_counts_the_adapter_only():
    recipe = load_recipe("qwen-math-7b-lora")
    facts = model_facts(recipe.model.model_name_or_path)
    adapter = adapter_plan(facts, recipe.model)
    assert 0.015 < adapter.trainable_params / facts.num_params < 0.03  # r=64 on every linear layer of 7B: ~2%
    kw = dict(gpus_per_node=1, nodes=1, gpu_mem_gib=80, zero_stage=ZERO_STAGE["zero2"])
    lora = plan(recipe.training, recipe.training.max_prompt_tokens, facts, adapter=adapter, **kw)
    full = plan(recipe.training, recipe.training.max_prompt_tokens, facts, **kw)
    assert not lora.errors, lora.render()  # 7B LoRA + a colocated engine fit one 80 GiB card
    assert any("the plan needs" in e for e in full.errors)  # full fine-tuning of 7B there does not
    assert "trainable params" in lora.render()
    assert round(lora.data["memory_gib"]["gradients"], 2) == 0.30  # 161.5 M bf16 adapter parameters
    recipe.model.load_in_4bit = True
    qlora = plan(
        recipe.training, recipe.training.max_prompt_tokens, facts, adapter=adapter_plan(facts, recipe.model), **kw
    )
    assert "base in 4-bit" in qlora.render() and 5 < qlora.data["memory_gib"]["policy_weights"] < 6


def test_lora_plan_names_the_base_dtype(capsys):
    """A float32 base is planned (and named) as float32; under DeepSpeed, which casts it to bf16, as bf16."""
    from open_grpo.cli import main as cli

    recipe = load_recipe("qwen-math-7b-lora", ["--dtype", "float32"])
    facts = model_facts(recipe.model.model_name_or_path)
    fp32, bf16 = adapter_plan(facts, recipe.model), adapter_plan(facts, recipe.model, zero_stage=3)
    assert "base in fp32" in fp32.label and "base in bf16" in bf16.label
    assert fp32.base_weight_bytes == 2 * bf16.base_weight_bytes == 4 * facts.num_params
    cli(["check", "qwen-math-7b-lora", "--gpus-per-node", "1", "--accelerate", "ddp", "--dtype", "float32"])
    assert "base in fp32" in capsys.readouterr().out


def test_gradient_checkpointing_auto_plans_the_lora_run(write_recipe, monkeypatch):
    """`auto` decides from the adapter's memory plan: the trainer hands the PEFT config to the plan."""
    from open_grpo.planning import preflight

    seen = {}

    class Planned(Exception):
        pass

    def runtime_plan(training, model_path, **configs):
        seen.update(configs)
        raise Planned

    monkeypatch.setattr(preflight, "runtime_plan", runtime_plan)
    recipe = write_recipe({**LORA, "gradient_checkpointing": "auto", "max_steps": 1, "dataset_size": 8})
    with pytest.raises(Planned):
        main(str(recipe))
    assert seen["peft_config"].r == 4 and seen["quantization_config"] is None


@pytest.mark.slow
def test_lora_run_saves_adapter_and_resumes(write_recipe, tmp_path):
    """Two steps straight == one step, then a second run resuming from checkpoint-1 for the second: the adapter,
    its optimizer state and the data position come back from the checkpoint."""
    small = {**LORA, "dataset_size": 4, "max_completion_length": 8, "num_generations": 4,
             "per_device_train_batch_size": 4, "save_strategy": "steps", "save_steps": 1}  # fmt: skip
    main(str(write_recipe({**small, "max_steps": 2, "output_dir": str(tmp_path / "straight")}, name="s.yaml")))
    resumed = {**small, "output_dir": str(tmp_path / "resumed")}
    main(str(write_recipe({**resumed, "max_steps": 1}, name="r1.yaml")))
    between = time.time()
    main(str(write_recipe({**resumed, "max_steps": 2}, name="r2.yaml")))

    for folder in (tmp_path / "resumed", tmp_path / "resumed" / "checkpoint-1", tmp_path / "resumed" / "checkpoint-2"):
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["r"] == 4 and config["lora_alpha"] == 8 and config["peft_type"] == "LORA"
        assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any("lora_B" in k for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # the adapter trained (B starts at zero)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2] and steps[0]["time"] < between < steps[1]["time"]  # step 1 not redone


@pytest.mark.slow
def test_colocated_pushes_merged_lora_weights(monkeypatch, write_recipe, tmp_path):
    """TRL merges the adapter before each push: the engine gets plain weight names, valued base + B @ A * alpha / r."""
    fake = fake_vllm.install(monkeypatch)
    # the double's log-probs (-5 per token) are not the model's: TRL's importance-sampling mask would drop every
    # completion and leave the adapter untrained, so the correction is off here
    recipe = write_recipe({**LORA, "use_vllm": True, "vllm_mode": "colocate", "max_steps": 2, "dataset_size": 32,
                           "save_strategy": "steps", "save_steps": 1, "max_completion_length": 8,
                           "vllm_importance_sampling_correction": False})  # fmt: skip
    main(str(recipe))
    (llm,) = fake.instances
    base = load_file(f"{resolve_model('random:tiny')}/model.safetensors")
    assert len(llm.generate_calls) == 2
    assert not [n for n in llm.loaded if "base_layer" in n or "lora_" in n]
    assert set(llm.weights) == set(base)  # every weight, by the name vLLM knows it under
    # the last push (before step 2's generation) carries the adapter as it was after step 1: checkpoint-1
    adapter = load_file(tmp_path / "out" / "checkpoint-1" / "adapter_model.safetensors")
    lora_a, lora_b = adapter[ADAPTER.format("A")], adapter[ADAPTER.format("B")]
    assert lora_b.abs().sum() > 0
    name = "model.layers.0.self_attn.q_proj.weight"
    expected = base[name] + lora_b @ lora_a * (LORA["lora_alpha"] / LORA["lora_r"])
    torch.testing.assert_close(llm.weights[name], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(llm.weights[name], base[name])
