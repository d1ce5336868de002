"""The plan of a parsed recipe, as `open-grpo check` and `open-grpo launch-args` print it: preflight's `plan` with the
recipe's model shape, dtype and options; what `gradient_checkpointing: auto` will choose on those cards; and, for a
`use_cpu` recipe, the plan of a CPU run (one process, no GPU) instead of a GPU cluster's."""

from __future__ import annotations

import copy

from open_grpo.planning.memory_plan import engine_memory, quantized_base
from open_grpo.planning.model_shapes import find_shape
from open_grpo.planning.preflight import Plan, plan
from open_grpo.recipe.world_size import generation_batch
from open_grpo.rewards.registry import parse_reward_specs
from open_grpo.rewards.reward_model import planned_reward_models
from open_grpo.trainer.lora import adapter_plan


def plan_recipe(recipe, *, gpus_per_node: int, nodes: int, gpu_mem_gib: float, zero_stage: int) -> Plan:
    """`plan` for a parsed recipe (config.Recipe): its model's shape, memory_check, all-reduce choice and dtype; for
    `gradient_checkpointing: auto`, what the trainer will choose; for `use_cpu`, a CPU run's plan."""
    if recipe.training.use_cpu:
        return cpu_plan(recipe.training)
    shape, where = find_shape(recipe.model.model_name_or_path, recipe.model.model_revision)
    specs = parse_reward_specs(recipe.script.rewards, recipe.script.reward_funcs, recipe.training.reward_weights)
    reward_models, unsized = planned_reward_models(specs)
    engine = engine_memory(recipe.training, quantized_base(recipe.model))

    def plan_with(training) -> Plan:
        result = plan(training, recipe.training.max_prompt_tokens, shape, gpus_per_node=gpus_per_node, nodes=nodes,
                      gpu_mem_gib=gpu_mem_gib, zero_stage=zero_stage, memory_check=recipe.training.memory_check,
                      allreduce_fusion=recipe.training.vllm_allreduce_fusion, model_dtype=recipe.model.dtype,
                      shape_note=where, adapter=shape and adapter_plan(shape, recipe.model, zero_stage),
                      reward_models=reward_models, engine=engine)  # fmt: skip
        result.warnings += unsized
        return result

    if not recipe.training.gradient_checkpointing_auto:
        return plan_with(recipe.training)
    from open_grpo.trainer.activation_checkpointing import (
        choice,  # it plans with this module: imported here, not at the top
    )

    without = copy.copy(recipe.training)
    without.gradient_checkpointing = False
    result = plan_with(without)
    on, why = choice(result if shape is not None else None)
    if on:
        result = plan_with(recipe.training)  # parsed with it on
    result.lines.append(f"gradient_checkpointing: auto -> {why} (decided again at start-up, on the real cards)")
    result.data["gradient_checkpointing"] = on
    return result


def cpu_plan(training) -> Plan:
    """`use_cpu: true`: one process on the CPU (accelerate_configs/cpu.yaml), whatever --gpus-per-node says."""
    p = Plan()
    p.lines.append("== layout: use_cpu: true: one process on the CPU, no GPU, no ZeRO, no vLLM (--gpus-per-node, "
                   "--nodes and --accelerate do not apply)")  # fmt: skip
    if training.use_vllm:
        p.errors.append("'use_vllm: true' needs a GPU, and the recipe says 'use_cpu: true': set 'use_vllm: false'")
    batch, problems = generation_batch(training, 1)
    p.errors += problems
    p.lines.append("== batch")
    p.lines.append(f"per optimizer step: {batch['completions_per_step']} completions = {batch['prompts_per_step']:g} "
                   f"prompts x {training.num_generations} generations")  # fmt: skip
    p.lines.append("== memory: no GPU memory plan for a CPU run")
    layout = {"nodes": 1, "gpus_per_node": 0, "world_size": 1, "zero_stage": 0, "device": "cpu",
              "generation": "transformers", "vllm_tensor_parallel_size": 1, "vllm_engines": 0}  # fmt: skip
    p.data.update(layout=layout, batch=batch, memory_gib=None, memory_skipped="a CPU run (use_cpu: true)")
    return p
