"""GPU tests (marked `gpu`, skipped without CUDA and vLLM): run on a GPU machine with `pytest -m gpu`.

A few colocated GRPO steps on a small random-weight Qwen2 (Qwen2.5-0.5B shape) through `open_grpo.train`, and the
recipe's `vllm_engine_kwargs` reaching the real engine; LoRA merged into the weights the engine gets, evaluation
through the engine; QLoRA (where bitsandbytes is installed).
"""

import importlib.util
import json

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM"),
]


def test_colocated_steps_and_engine_kwargs(write_recipe, tmp_path):
    from safetensors.torch import load_file

    from open_grpo.data.models import resolve_model
    from open_grpo.train import main

    data = tmp_path / "train.jsonl"  # local data: no reasoning-gym needed
    data.write_text(
        "\n".join(json.dumps({"problem": f"What is {i} + {i}?", "solution": str(2 * i)}) for i in range(64))
    )
    recipe = write_recipe(
        {
            "dataset_name": str(data),
            "model_name_or_path": "random:0.5b",
            "dtype": "bfloat16",
            "use_cpu": False,
            "bf16": True,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.25,
            "vllm_engine_kwargs": {"max_num_seqs": 24, "max_num_batched_tokens": 3072, "enable_prefix_caching": False},
            "max_completion_length": 64,
            "learning_rate": 1.0e-5,
            "max_steps": 3,
        }
    )
    main(str(recipe))
    out = tmp_path / "out"
    engine = json.loads((out / "vllm_engine.json").read_text())
    assert engine["max_num_seqs"] == 24 and engine["max_num_batched_tokens"] == 3072
    assert engine["enable_prefix_caching"] is False
    assert engine["max_model_len"] == 128 + 64  # set by the trainer from the recipe's limits

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 3
    assert all(r["time/generation"] > 0 and r["time/weight_sync"] > 0 and r["memory/peak_gib"] > 0 for r in steps)
    assert all(r["completions/mean_length"] > 0 for r in steps)

    before = load_file(f"{resolve_model('random:0.5b')}/model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def _gpu_recipe(write_recipe, tmp_path, **changes):
    data = tmp_path / "train.jsonl"
    data.write_text(
        "\n".join(json.dumps({"problem": f"What is {i} + {i}?", "solution": str(2 * i)}) for i in range(64))
    )
    return write_recipe(
        {
            "dataset_name": str(data),
            "model_name_or_path": "random:0.5b",
            "dtype": "bfloat16",
            "use_cpu": False,
            "bf16": True,
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": 0.25,
            "max_completion_length": 32,
            "max_steps": 3,
            **changes,
        }
    )


def test_colocated_lora_merges_into_engine_and_evaluates(monkeypatch, write_recipe, tmp_path):
    """LoRA on the colocated path: TRL merges the adapter into the weights it pushes to the real engine (checked on
    one layer against the checkpointed adapter), rewards and eval rows are logged, the adapter is saved."""
    from safetensors.torch import load_file

    from open_grpo.data.models import resolve_model
    from open_grpo.train import main
    from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer

    trainers = []
    train = OpenGRPOTrainer.train
    monkeypatch.setattr(OpenGRPOTrainer, "train", lambda self, *a, **k: trainers.append(self) or train(self, *a, **k))
    recipe = _gpu_recipe(
        write_recipe, tmp_path, use_peft=True, lora_r=16,
        lora_alpha=32, lora_target_modules="all-linear", learning_rate=1.0e-2, save_strategy="steps", save_steps=1,
        eval_dataset_name=str(tmp_path / "train.jsonl"), eval_dataset_size=8, eval_on_start=True,
        num_generations_eval=4, per_device_eval_batch_size=8,
    )  # fmt: skip
    main(str(recipe))
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 3 and all(r["time/weight_sync"] > 0 and r["reward"] is not None for r in steps)
    assert [r["step"] for r in rows if "eval/reward" in r] == [0]
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    # 8 sequences of 128 + 32 tokens: TRL's 4096-token budget would overrun vLLM's start-up dummy runs
    assert json.loads((out / "vllm_engine.json").read_text())["max_num_batched_tokens"] == 8 * 160

    # the last push (before step 3's generation) carries the adapter after step 2: checkpoint-2's
    engine = trainers[0].vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    pushed = engine.model.layers[0].self_attn.o_proj.weight.float().cpu()
    base = load_file(f"{resolve_model('random:0.5b')}/model.safetensors")["model.layers.0.self_attn.o_proj.weight"]
    adapter = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    key = "base_model.model.model.layers.0.self_attn.o_proj.lora_{}.weight"
    delta = adapter[key.format("B")].float() @ adapter[key.format("A")].float() * (32 / 16)
    assert delta.abs().max() > 0
    assert (pushed - (base.float() + delta)).abs().max() < 0.1 * delta.abs().max()  # merged (bf16 rounding aside)
    assert (pushed - base.float()).abs().max() > 0.5 * delta.abs().max()  # not the bare base


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes")
def test_colocated_qlora_trains(write_recipe, tmp_path):
    """QLoRA (4-bit base) through TRL's path on the colocated engine: steps run, rewards logged, adapter saved."""
    from open_grpo.train import main

    recipe = _gpu_recipe(write_recipe, tmp_path, use_peft=True, lora_target_modules="all-linear", load_in_4bit=True,
                         learning_rate=1.0e-4, max_steps=2)  # fmt: skip
    main(str(recipe))
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r.get("reward") is not None]) == 2
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_gradient_checkpointing_auto_on_the_card_plans_the_adapter(write_recipe):
    """On the real card, `auto` for a LoRA run decides from the adapter's plan (the model is not loaded)."""
    from open_grpo.planning import preflight
    from open_grpo.recipe import load_recipe
    from open_grpo.trainer.activation_checkpointing import decide
    from open_grpo.trainer.lora import peft_config

    recipe = load_recipe(write_recipe({"model_name_or_path": "random:1.5b", "dtype": "bfloat16", "use_cpu": False,
                                       "bf16": True, "use_peft": True, "lora_r": 8, "gradient_checkpointing": "auto"}))  # fmt: skip
    recipe.training.model_init_kwargs = {"dtype": "bfloat16"}  # as open_grpo.train sets it before the trainer
    plan = preflight.runtime_plan(recipe.training, "random:1.5b", peft_config=peft_config(recipe.model))
    assert plan is not None and "LoRA r=8" in plan.render() and "base in bf16" in plan.render()
    why = decide(recipe.training, "random:1.5b", peft_config(recipe.model), None)
    assert "no memory plan here" not in why  # decided from the card's plan


# ------------------------------------------------------------------- the engine core in its own process (#24)


def _metrics_rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_own_process_generation_equals_in_process(tmp_path):
    """The probe at a small scale: greedy completions of the engine in its own process equal the in-process
    engine's before and after pushing perturbed weights (staging buffer vs TRL's load_weights), and the push changed
    them; both engines generate the timed batch and report their steps."""
    from open_grpo.bench import engine_probe

    code = engine_probe.main(["--out", str(tmp_path), "--model", "random:0.5b", "--steps", "1", "--sequences", "4",
                              "--tokens", "64", "--prompt-tokens", "64"])  # fmt: skip
    result = json.loads((tmp_path / "probe.json").read_text())
    assert result["correctness"]["passed"], result["correctness"]
    assert code == 0
    for name in ("own_process", "in_process"):
        engine = result["engines"][name]
        assert engine["calls"] == 1 and engine["step_ms_median"] > 0 and engine["push_s_median"]
    assert result["engines"]["own_process"]["engine_process_reserved_gib"] > 0


def test_colocated_steps_with_the_engine_in_its_own_process(write_recipe, tmp_path):
    """Three GRPO steps with `vllm_engine_process: own_process`: the engine runs where it says, weights are pushed
    through the staging buffer every step, the engine's steps and memory are logged, the model trains."""
    from safetensors.torch import load_file

    from open_grpo.data.models import resolve_model
    from open_grpo.train import main

    main(str(_gpu_recipe(write_recipe, tmp_path, vllm_engine_process="own_process")))
    out = tmp_path / "out"
    engine = json.loads((out / "vllm_engine.json").read_text())
    assert engine["engine_process"] == "own_process" and engine["distributed_executor_backend"] == "uni"
    assert engine["kv_cache_memory_bytes"] > 0  # vllm_kv_cache: auto
    steps = [r for r in _metrics_rows(out) if "reward" in r]
    assert len(steps) == 3
    assert all(r["time/weight_sync"] > 0 and r["memory/engine_process_reserved_gib"] > 0 for r in steps)
    assert all(r["engine/steps"] >= 32 and r["engine/step_ms_max"] >= r["engine/step_ms_median"] for r in steps)
    assert all(r["offpolicy/staleness"] == 0 for r in steps)
    before = load_file(f"{resolve_model('random:0.5b')}/model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_own_process_lora_pushes_the_merged_weights(monkeypatch, write_recipe, tmp_path):
    """LoRA with the engine in its own process: TRL's merge/unmerge around the staged push; the engine's o_proj of
    layer 0 is the base plus the checkpointed adapter's delta (read back from the engine process)."""
    import numpy as np
    from safetensors.torch import load_file

    from open_grpo.data.models import resolve_model
    from open_grpo.train import main
    from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer

    trainers = []
    train = OpenGRPOTrainer.train
    monkeypatch.setattr(OpenGRPOTrainer, "train", lambda self, *a, **k: trainers.append(self) or train(self, *a, **k))
    recipe = _gpu_recipe(write_recipe, tmp_path, use_peft=True, lora_r=16, lora_alpha=32,
                         lora_target_modules="all-linear", learning_rate=1.0e-2, save_strategy="steps", save_steps=1,
                         vllm_engine_process="own_process")  # fmt: skip
    main(str(recipe))
    out = tmp_path / "out"
    name = "model.layers.0.self_attn.o_proj.weight"
    (read,) = trainers[0].vllm_generation.llm.collective_rpc("open_grpo_read", args=(name,))
    pushed = torch.from_numpy(np.frombuffer(read["float32"], dtype=np.float32).copy()).view(read["shape"])
    base = load_file(f"{resolve_model('random:0.5b')}/model.safetensors")[name]
    adapter = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    key = "base_model.model.model.layers.0.self_attn.o_proj.lora_{}.weight"
    delta = adapter[key.format("B")].float() @ adapter[key.format("A")].float() * (32 / 16)
    assert delta.abs().max() > 0
    assert (pushed - (base.float() + delta)).abs().max() < 0.1 * delta.abs().max()
