"""TRL's `GRPOConfig` as recipes parse it: counts checked before TRL divides by them, and a planning variant.

`RecipeGRPOConfig` reports a zero or negative batch size, generation count, length or TP size as a `RecipeError`
naming the key (TRL would divide by zero or plan negative memory). `PlanningGRPOConfig` is what `open-grpo check`
and `launch-args` parse with: TRL derives and checks the generation batch at parse time for the parsing process's
world size (1 on a login node), which rejects recipes that are valid on the target cluster, so the planning parse
keeps the recipe's own `generation_batch_size` / `steps_per_generation` and the preflight judges them for the
target world size (preflight.batch_plan).
"""

from __future__ import annotations

import math

from trl import GRPOConfig

from .errors import RecipeError

# key -> smallest valid value; None values mean "unset" and are not checked
MINIMUM = {
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "num_generations": 2,  # GRPO's advantage is relative to the group: one completion has no baseline
    "max_completion_length": 1,
    "steps_per_generation": 1,
    "generation_batch_size": 1,
    "num_iterations": 1,
    "vllm_tensor_parallel_size": 1,
    "vllm_max_model_length": 1,
}


def count_problems(config) -> list[str]:
    """One line per count below its minimum, and a vLLM memory share outside (0, 1]."""
    problems = []
    for key, minimum in MINIMUM.items():
        value = getattr(config, key, None)
        if isinstance(value, int) and value < minimum:
            why = " (GRPO compares each completion with its group)" if key == "num_generations" else ""
            problems.append(f"{key!r} must be at least {minimum}{why}, got {value}")
    share = config.vllm_gpu_memory_utilization
    if config.use_vllm and not 0 < share <= 1:
        problems.append(
            f"'vllm_gpu_memory_utilization' must be in (0, 1] (the share of each GPU's memory vLLM takes), got {share}"
        )
    return problems


class RecipeGRPOConfig(GRPOConfig):
    """`GRPOConfig` whose counts are checked, all together, before TRL's own arithmetic."""

    def __post_init__(self):
        problems = count_problems(self)
        if problems:
            raise RecipeError(problems)
        super().__post_init__()


class PlanningGRPOConfig(RecipeGRPOConfig):
    """`RecipeGRPOConfig` parsed for planning another cluster: the generation batch is left as the recipe gives it
    (`generation_batch_size` and `steps_per_generation` stay None unless set) for the preflight to judge at the
    target world size; every other TRL check runs."""

    _planning_world: int | None = None

    @property
    def world_size(self) -> int:
        return self._planning_world or super().world_size

    def __post_init__(self):
        recipe_batch = (self.generation_batch_size, self.steps_per_generation)
        if None not in recipe_batch:  # TRL's own message, which the stand-in below would skip
            raise RecipeError("'generation_batch_size' and 'steps_per_generation' can not be both configured")
        # A stand-in world size for which TRL's world-size checks hold whatever the target; the plan redoes them.
        generations = [g for g in (self.num_generations, self.num_generations_eval) if isinstance(g, int) and g > 0]
        self._planning_world = math.lcm(*generations) if generations else 1
        self.generation_batch_size = self.steps_per_generation = None
        try:
            super().__post_init__()
        finally:
            self._planning_world = None
        self.generation_batch_size, self.steps_per_generation = recipe_batch
