"""The memory plan (memory_plan.py) against the peaks measured by `open-grpo bench`, and `memory_check` at start-up."""

import json
from types import SimpleNamespace

import pytest

from open_grpo.planning.memory_plan import GIB
from open_grpo.planning.model_shapes import SHAPES
from open_grpo.planning.preflight import plan
from tests.conftest import ROOT

CARD_GIB = 143771 / 1024  # the H200 of every results file (nvidia-smi's memory.total, MiB)


def _measured_rows():
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        results = json.loads(path.read_text())
        for row in results["rows"]:
            if "error" not in row:
                yield pytest.param(results["shape"], row, id=f"{path.stem}:{row['name']}")


def _training(**changes):
    from open_grpo.trainer.config import OpenGRPOConfig

    return OpenGRPOConfig(output_dir="/tmp/plan", bf16=False, report_to="none", use_vllm=True, vllm_mode="colocate",
                      num_generations=8, **changes)  # fmt: skip


@pytest.mark.parametrize("shape,row", list(_measured_rows()))
def test_plan_matches_the_measured_peaks(shape, row):
    """The plan of each measured bench row is 0.9x to 1.2x its measured peak, compared like with like.

    `max_memory_allocated_gib` (`peak_mem_gib` in older files) is torch.cuda.max_memory_allocated() of the training process over a step (the telemetry resets
    the peak at each step's start, bench/worker.py keeps the largest). Colocated, vLLM's engine lives in that process
    and allocates its weights, KV cache, CUDA-graph pools and activations through torch's caching allocator, so the
    peak includes vLLM's share as well as the trainer's weights, gradients, optimizer state, activations and fused
    LM head. It excludes what torch's allocator never sees: the CUDA context, NCCL's buffers and the slack between
    reserved and allocated memory, i.e. the plan's `per_process_overhead`, which is left out of the comparison.
    The rows: Qwen2.5-1.5B shape, bf16 weights, 16 completions per GPU of <= 512 prompt + 1024 completion tokens;
    1-GPU rows run the worker without accelerate (no DeepSpeed: torch AdamW, ZeRO stage 0), 2-GPU rows under the
    results file's ZeRO config. Gradient checkpointing and vLLM's share are the row's, else TRL's defaults.
    """
    config = {**row["config"], **row["config"].get("keys", {})}  # results files before and after rows recorded keys
    training = _training(per_device_train_batch_size=shape["completions_per_gpu"],
                         max_completion_length=shape["completion_len"],
                         **{k: config[k] for k in ("gradient_checkpointing", "vllm_gpu_memory_utilization") if k in config})  # fmt: skip
    measured = row.get("max_memory_allocated_gib", row.get("peak_mem_gib"))
    zero = {"zero2": 2, "zero3": 3}[shape["accelerate"]] if row["gpus"] > 1 else 0
    result = plan(training, shape["prompt_len"], SHAPES["1.5b"], gpus_per_node=row["gpus"], nodes=1,
                  gpu_mem_gib=CARD_GIB, zero_stage=zero, model_dtype="bfloat16")  # fmt: skip
    memory = result.data["memory_gib"]
    torch_allocated = memory["total"] - memory["per_process_overhead"]
    assert 0.9 * measured <= torch_allocated <= 1.2 * measured, (measured, memory)


def test_gradient_checkpointing_off_plans_every_layers_activations():
    on, off = (plan(_training(per_device_train_batch_size=16, max_completion_length=1024, gradient_checkpointing=gc),
                    512, SHAPES["1.5b"], gpus_per_node=1, nodes=1, gpu_mem_gib=CARD_GIB, zero_stage=0)
               for gc in (True, False))  # fmt: skip
    assert off.data["memory_gib"]["activations"] > 10 * on.data["memory_gib"]["activations"]


def _fake_gpu(monkeypatch, gib):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=gib * GIB))
    monkeypatch.setenv("WORLD_SIZE", "1")


def test_trainer_preflight_honours_memory_check(monkeypatch, caplog):
    """At start-up the trainer plans for the real card: over it, `memory_check: error` stops, `warn` warns."""
    from open_grpo.planning.preflight import check_at_start
    from open_grpo.recipe import RecipeError

    training = _training(per_device_train_batch_size=16, max_completion_length=1024, max_prompt_tokens=512)
    _fake_gpu(monkeypatch, 24)  # a 24 GiB card: the 1.5B bench shape does not fit
    with pytest.raises(RecipeError, match="the plan needs .* of the 24 GiB card"):
        check_at_start(training, "random:1.5b")
    caplog.set_level("INFO")
    training.memory_check = "warn"
    check_at_start(training, "random:1.5b")
    assert "WARNING: the plan needs" in caplog.text


def test_trainer_preflight_refuses_trtllm_across_nodes(monkeypatch):
    from open_grpo.planning.preflight import check_at_start
    from open_grpo.recipe import RecipeError

    training = _training(per_device_train_batch_size=8, max_completion_length=64, vllm_tensor_parallel_size=2,
                         max_prompt_tokens=64, vllm_allreduce_fusion="trtllm")  # fmt: skip
    _fake_gpu(monkeypatch, 141)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match="trtllm is FlashInfer's single-node backend"):
        check_at_start(training, "random:1.5b")
