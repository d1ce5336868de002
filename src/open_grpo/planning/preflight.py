"""Preflight: will this recipe run on this cluster? Offline, no GPU, in seconds.

    open-grpo check qwen-math-1.5b                          # 1 node x 8 GPUs, this machine's card (else 80 GiB)
    open-grpo check qwen-math-7b --nodes 2 --gpus-per-node 4 --gpu-mem-gib 141 --accelerate zero2

Prints the process layout (data-parallel replicas, tensor-parallel groups of consecutive ranks), the batch
arithmetic for the target world size and a memory plan per GPU in named terms (memory_plan.py); lists every
problem. The trainer runs the same checks at start-up with the real world size and cards.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from open_grpo.engine.allreduce import multi_node_problem
from open_grpo.errors import RecipeError
from open_grpo.planning.memory_plan import GIB, EngineMemory, describe, fits_one_gpu, memory_plan
from open_grpo.planning.model_shapes import ModelShape, find_shape
from open_grpo.recipe.world_size import generation_batch
from open_grpo.rewards.reward_model import loaded_sizes
from open_grpo.trainer.lora import base_dtype, trainer_adapter_plan

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_TOKENS = 512  # planned prompt length when the recipe sets no max_prompt_tokens
# docs/PERFORMANCE.md, 1.5B bench shape on 2x H200: per-GPU throughput at DP=2 relative to one GPU
ZERO2_VS_ZERO3_MEASURED = "1.5B on 2 GPUs: 97% of one GPU's throughput with zero2, 75% with zero3"
# The shipped accelerate configs -> the ZeRO stage planned (FSDP2 shards and gathers the weights as ZeRO-3 does).
ZERO_STAGE = {"zero3": 3, "zero2": 2, "fsdp2": 3, "ddp": 0, "single_gpu": 0, "cpu": 0}
DEEPSPEED_CONFIGS = ("zero3", "zero2")


def launcher_zero_stage(environ=os.environ) -> int:
    """The ZeRO stage of this launch, as `accelerate launch` set it up (FSDP: planned as ZeRO-3)."""
    if environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return ZERO_STAGE["fsdp2"]
    return int(environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", 0) or 0)


def model_facts(name: str, revision: str | None = None) -> ModelShape:
    """The shape of a model the preflight knows (model_shapes.find_shape); `RecipeError` for one it does not."""
    shape, where = find_shape(name, revision)
    if shape is None:
        raise RecipeError(f"no shape for model_name_or_path {where}")
    return shape


class PlanFailed(Exception):
    """The plan for a layout has errors (a failed check, exit 1): one line per problem."""

    def __init__(self, problems: list[str], where: str):
        self.problems = problems
        super().__init__(f"{where}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the layout, batch and memory numbers, for --json

    def render(self) -> str:
        out = list(self.lines)
        out += [f"WARNING: {w}" for w in self.warnings]
        out += [f"ERROR: {e}" for e in self.errors]
        return "\n".join(out)

    def to_json(self, **extra) -> str:
        return json.dumps({**extra, **self.data, "warnings": self.warnings, "errors": self.errors}, indent=1)


def layout_problems(gpus_per_node: int, nodes: int) -> list[str]:
    """Command-line layout values no plan can use."""
    return [f"{flag} must be at least 1, got {value}" for flag, value in
            (("--gpus-per-node", gpus_per_node), ("--nodes", nodes)) if value < 1]  # fmt: skip


def plan(
    training,
    max_prompt_tokens: int | None,
    shape: ModelShape | None,
    *,
    gpus_per_node: int,
    nodes: int,
    gpu_mem_gib: float,
    zero_stage: int,
    memory_check: str = "error",
    allreduce_fusion: str = "auto",
    model_dtype: str | None = "bfloat16",
    shape_note: str = "",
    adapter=None,
    reward_models=(),
    engine: EngineMemory | None = None,
) -> Plan:
    """Layout, batch arithmetic and memory per GPU for a recipe on `nodes` x `gpus_per_node` cards. A None `shape`
    (a model the preflight cannot see) skips the checks that need it, saying why (`shape_note`). `adapter`: a
    `lora.AdapterPlan` for a LoRA run; `reward_models`: `rewards.reward_model.RewardModelSize`s; `engine`: vLLM's
    memory sizing and process (memory_plan.EngineMemory)."""
    p = Plan()
    world = gpus_per_node * nodes
    colocate = training.use_vllm and training.vllm_mode == "colocate"
    tp = training.vllm_tensor_parallel_size if colocate else 1

    # Layout.
    p.lines.append(f"== layout: {nodes} node(s) x {gpus_per_node} GPU(s) = world size {world}")
    if world % tp:
        p.errors.append(f"world size {world} is not a multiple of vllm_tensor_parallel_size {tp}")
    elif gpus_per_node % tp:
        p.errors.append(
            f"vllm_tensor_parallel_size {tp} does not divide {gpus_per_node} GPUs per node: a TP group would span "
            "nodes (TRL groups consecutive ranks); pick a TP that divides the GPUs per node"
        )
    if shape is not None and shape.num_attention_heads % tp:
        p.errors.append(f"the model's {shape.num_attention_heads} attention heads do not divide by TP {tp}")
    if colocate and multi_node_problem(tp, allreduce_fusion, nodes):
        p.errors.append(multi_node_problem(tp, allreduce_fusion, nodes))
    layout = {"nodes": nodes, "gpus_per_node": gpus_per_node, "world_size": world, "zero_stage": zero_stage,
              "generation": "colocate" if colocate else "server" if training.use_vllm else "transformers",
              "vllm_tensor_parallel_size": tp, "vllm_engines": world // tp if colocate else 0}  # fmt: skip
    if colocate and not p.errors:
        groups = [list(range(i, i + tp)) for i in range(0, world, tp)]
        shown = ", ".join(str(g) for g in groups[:8]) + (" ..." if len(groups) > 8 else "")
        p.lines.append(f"training: {world} data-parallel ranks, ZeRO stage {zero_stage}")
        p.lines.append(f"vLLM (colocated): {len(groups)} engine(s), TP {tp}, groups of consecutive ranks: {shown}")
        if tp > 1 and nodes > 1 and allreduce_fusion == "auto":
            p.lines.append(f"vLLM's world spans {nodes} nodes: its fused all-reduce is turned off (auto)")
    elif training.use_vllm and not colocate:
        p.lines.append(f"vLLM: server mode at {training.vllm_server_host}:{training.vllm_server_port} (separate GPUs)")
    elif not training.use_vllm:
        p.lines.append("generation: transformers (use_vllm: false)")

    # Batch arithmetic, at the target world size (its problems are the recipe's: recipe/world_size.py).
    batch, _ = generation_batch(training, world)
    spg = batch["steps_per_generation"]
    seq_len = (max_prompt_tokens or DEFAULT_PROMPT_TOKENS) + training.max_completion_length
    sequences_per_engine = training.per_device_train_batch_size * spg * tp
    batch.update(max_sequence_tokens=seq_len, sequences_per_engine=sequences_per_engine)
    p.lines.append("== batch")
    p.lines.append(
        f"per optimizer step: {batch['completions_per_step']} completions = {batch['prompts_per_step']:g} prompts x "
        f"{training.num_generations} generations; per GPU: {batch['completions_per_gpu_per_step']}"
    )
    per_engine = (
        f"; per vLLM engine: {sequences_per_engine} sequences of <= {seq_len} tokens" if training.use_vllm else ""
    )
    p.lines.append(f"generation batch: {batch['generation_batch']} completions (every {spg} step(s)){per_engine}")
    p.data.update(layout=layout, batch=batch, memory_gib=None)
    if colocate and training.vllm_max_model_length is not None and training.vllm_max_model_length < seq_len:
        p.errors.append(
            f"vllm_max_model_length {training.vllm_max_model_length} is below max prompt + max completion = {seq_len}"
        )

    if shape is None:
        p.lines.append("== memory: plan skipped (no model shape: see the warning below)")
        p.warnings.append(f"memory plan skipped: {shape_note}")
        p.data["memory_skipped"] = shape_note
        return p
    mem = memory_plan(training, shape, world=world, tp=tp, zero_stage=zero_stage, seq_len=seq_len,
                      sequences_per_engine=sequences_per_engine, gpu_mem_gib=gpu_mem_gib, model_dtype=model_dtype,
                      colocate=colocate, adapter=adapter, reward_models=reward_models, engine=engine)  # fmt: skip
    if adapter is not None:
        p.lines.append(adapter.describe(shape.num_params) + "; gradients and optimizer state for the adapter only")
    _judge_memory(p, mem, shape, tp=tp, world=world, zero_stage=zero_stage, gpu_mem_gib=gpu_mem_gib,
                  memory_check=memory_check, training=training, shape_note=shape_note,
                  engine=engine or EngineMemory())  # fmt: skip
    return p


def _judge_memory(p: Plan, mem, shape, *, tp, world, zero_stage, gpu_mem_gib, memory_check, training, shape_note,
                  engine: EngineMemory):  # fmt: skip
    card = gpu_mem_gib * GIB
    p.data["memory_gib"] = {**mem.gib(), "card": round(gpu_mem_gib, 2)}
    p.data["model"] = {"params": shape.num_params, "shape_from": shape_note}
    p.lines.append(f"== memory per GPU ({gpu_mem_gib:g} GiB card; model {shape.num_params / 1e9:.2f} B params, "
                   f"shape from {shape_note or 'the recipe'})")  # fmt: skip
    p.lines += describe(mem)
    if "vllm_share" in mem.terms:
        p.data["vllm"] = {"weights_gib": round(mem.vllm_weights / GIB, 2), "kv_cache_tokens": mem.kv_cache_tokens,
                          "generation_batch_tokens": mem.generation_batch_tokens, "kv_cache": engine.kv_cache,
                          "engine_process": engine.process}  # fmt: skip
        sized = ("vllm_kv_cache auto: weights + one generation batch's KV cache + overhead" if engine.kv_cache == "auto"
                 else f"vllm_gpu_memory_utilization {training.vllm_gpu_memory_utilization}")  # fmt: skip
        p.lines.append(
            f"  vLLM share ({sized}): weights "
            f"{mem.vllm_weights / GIB:.2f} GiB, KV cache {mem.kv_cache_tokens:,} tokens; one generation batch "
            f"needs {mem.generation_batch_tokens:,}"
        )
        if mem.kv_cache_tokens < mem.generation_batch_tokens:
            p.errors.append(
                f"the KV cache holds {mem.kv_cache_tokens:,} tokens but one generation batch needs "
                f"{mem.generation_batch_tokens:,}: raise vllm_gpu_memory_utilization, raise TP, or lower "
                "per_device_train_batch_size / lengths"
            )
        if tp > 1 and fits_one_gpu(mem, shape, tp):
            p.warnings.append(f"TP {tp} on a model that fits one GPU's vLLM share: TP 1 is usually faster")
    p.lines.append(f"  {'total':<24}{mem.total / GIB:>7.2f} GiB of {gpu_mem_gib:g} GiB")
    if mem.total > card:
        over = (
            f"the plan needs {mem.total / GIB:.1f} GiB per GPU (training {mem.training / GIB:.1f} + vLLM's share "
            f"{mem.terms.get('vllm_share', 0) / GIB:.1f}) of the {gpu_mem_gib:g} GiB card: use "
            + ("vllm_kv_cache: auto or " if engine.kv_cache != "auto" else "")
            + "vllm_gpu_memory_utilization or per_device_train_batch_size, enable gradient_checkpointing"
            + (", use a higher ZeRO stage (--accelerate zero3)" if zero_stage < 3 else "")
            + "; or, knowing the plan is pessimistic for your run, set memory_check: warn"
        )
        (p.warnings if memory_check == "warn" else p.errors).append(over)
    if zero_stage == 3 and world > 1:
        zero2 = mem.total - mem.terms["policy_weights"] - mem.terms.get("zero3_gathered", 0) + 2 * shape.num_params
        if zero2 < 0.9 * card:
            p.warnings.append(
                "ZeRO-3 on a model that fits with ZeRO-2: zero2 avoids gathering the weights for every pass and is "
                f"faster ({ZERO2_VS_ZERO3_MEASURED}, docs/PERFORMANCE.md): --accelerate zero2 (make: ACCELERATE=zero2)"
            )


def runtime_plan(
    training, model_path: str, peft_config=None, quantization_config=None, reward_models=(), engine=None
) -> Plan | None:
    """The same checks on the real world size and cards (called by the trainer before it builds vLLM); `training` is
    the trainer's OpenGRPOConfig (max_prompt_tokens, memory_check, vllm_allreduce_fusion are its options)."""
    import torch

    if not torch.cuda.is_available():
        return None
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", min(world, torch.cuda.device_count())))
    zero = launcher_zero_stage()
    shape, where = find_shape(model_path)
    dtype = str((training.model_init_kwargs or {}).get("dtype", "float32")).removeprefix("torch.")
    mem = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GIB
    adapter = shape and trainer_adapter_plan(shape, peft_config, quantization_config, base_dtype(dtype, zero))
    return plan(training, training.max_prompt_tokens, shape, gpus_per_node=local, nodes=max(1, world // local),
                gpu_mem_gib=mem, zero_stage=zero, memory_check=training.memory_check,
                allreduce_fusion=training.vllm_allreduce_fusion, model_dtype=dtype, shape_note=where,
                adapter=adapter, reward_models=reward_models, engine=engine)  # fmt: skip


def check_at_start(training, model_path, peft_config=None, quantization_config=None, reward_funcs=(),
                   engine=None) -> None:  # fmt: skip
    """`open-grpo check` on the real world size and cards, before vLLM or the model is built (the trainer calls it).
    Logs the plan on the main process; raises `RecipeError` for its errors. `engine`: memory_plan.EngineMemory."""
    result = runtime_plan(training, model_path, peft_config=peft_config, quantization_config=quantization_config,
                          reward_models=loaded_sizes(reward_funcs), engine=engine)  # fmt: skip
    if result is None:
        return
    if training.process_index == 0:
        logger.info("preflight on this cluster:\n%s", result.render())
    if result.errors:
        raise RecipeError(result.errors, "preflight")
