"""The batch arithmetic TRL does at start-up for the world size it runs on (GRPOConfig.__post_init__), done for the
world size a recipe is planned for: the generation batch, whole prompt groups in it, and the eval batch.

TRL checks these in the process that parses the config, with that process's world size (1 on a login node), so a
recipe valid on 8 GPUs can fail on one and the reverse; `open-grpo check` and `launch-args` run them for the target
layout, the trainer's start-up check for the real one.
"""

from __future__ import annotations


def generation_batch(training, world: int) -> tuple[dict, list[str]]:
    """The generation batch for `world` ranks, derived as TRL derives it, and its problems (one line each)."""
    per_device, generations = training.per_device_train_batch_size, training.num_generations
    global_batch = per_device * world
    problems = []
    if training.generation_batch_size is not None and training.steps_per_generation is not None:
        problems.append(
            "'generation_batch_size' and 'steps_per_generation' are both set (TRL refuses that): keep one of them"
        )
    if training.steps_per_generation is not None:
        spg = training.steps_per_generation
    elif training.generation_batch_size is not None:
        spg = max(1, training.generation_batch_size // global_batch)
        if training.generation_batch_size % global_batch:
            problems.append(
                f"'generation_batch_size' {training.generation_batch_size} is not a multiple of the global batch "
                f"per_device_train_batch_size {per_device} x world size {world} = {global_batch}: set it to a "
                f"multiple of {global_batch}, or set steps_per_generation instead"
            )
    else:
        spg = training.gradient_accumulation_steps
    size = global_batch * spg
    if size % generations:
        fits = next(b for b in range(per_device, per_device + generations + 1) if b * world * spg % generations == 0)
        problems.append(
            f"the generation batch per_device_train_batch_size {per_device} x world size {world} x "
            f"steps_per_generation {spg} = {size} completions must be divisible by 'num_generations' "
            f"{generations} (whole prompt groups): use per_device_train_batch_size {fits}, or change "
            "steps_per_generation or num_generations"
        )
    batch = {
        "completions_per_step": global_batch * training.gradient_accumulation_steps,
        "prompts_per_step": global_batch * training.gradient_accumulation_steps / generations,
        "completions_per_gpu_per_step": per_device * training.gradient_accumulation_steps,
        "steps_per_generation": spg,
        "generation_batch": size,
    }
    return batch, problems


def eval_batch_problems(training, world: int) -> list[str]:
    """Whole groups of `num_generations_eval` in the global eval batch. TRL checks it when `eval_strategy` is set;
    `eval_on_start` alone evaluates too, so it is checked then as well."""
    if training.eval_strategy == "no" and not training.eval_on_start:
        return []
    k = training.num_generations_eval or training.num_generations
    per_device = training.per_device_eval_batch_size
    if (per_device * world) % k == 0:
        return []
    fits = next(b for b in range(per_device, per_device + k + 1) if b * world % k == 0)
    return [
        f"the eval batch per_device_eval_batch_size {per_device} x world size {world} = {per_device * world} "
        f"completions must be divisible by 'num_generations_eval' {k} (whole prompt groups; TRL stops every rank "
        f"otherwise): use per_device_eval_batch_size {fits}, or change num_generations_eval"
    ]


def problems(training, world: int) -> list[str]:
    counts = (training.per_device_train_batch_size, training.num_generations, training.per_device_eval_batch_size)
    if not all(isinstance(c, int) and c > 0 for c in counts) or world < 1:
        return []  # the counts' own checks say what is wrong
    return generation_batch(training, world)[1] + eval_batch_problems(training, world)
