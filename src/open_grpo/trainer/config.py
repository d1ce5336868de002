"""`OpenGRPOConfig`: TRL's `GRPOConfig` plus open_grpo's trainer options (recipe/options.py), the one config the
trainer reads (`self.args.<option>`), as `GRPOTrainer` reads `GRPOConfig`.

Its `__post_init__` first runs the recipe layer's rules of the training keys for the world size this process was
launched with (WORLD_SIZE), so a config built in code (the benchmark, tests) is checked like a recipe, every problem in
one `RecipeError`; then TRL's and transformers' own checks have the last word, before any model loads.
`trainer_config(recipe)` builds it from a checked recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trl import GRPOConfig

from open_grpo.errors import RecipeError
from open_grpo.recipe.options import OpenGRPOOptions
from open_grpo.recipe.parsing import Recipe, world_size_here
from open_grpo.recipe.rules_training import training_problems
from open_grpo.recipe.values import section_problems


@dataclass
class OpenGRPOConfig(OpenGRPOOptions, GRPOConfig):
    """TRL's GRPOConfig with open_grpo's options (see recipe/options.py for each one's type, default and help)."""

    def __post_init__(self):
        problems, types_ok = section_problems(self, "training")
        problems += training_problems(self, world_size_here()) if types_ok else []
        if problems:
            raise RecipeError(problems)
        super().__post_init__()


def trainer_config(recipe: Recipe) -> OpenGRPOConfig:
    """The recipe's training keys as the real OpenGRPOConfig. TRL's or transformers' own refusal of a value the
    recipe layer let through is a `RecipeError` too (exit 2), with their message."""
    keys = {f.name for f in dataclasses.fields(OpenGRPOConfig) if f.init}
    values = {k: v for k, v in recipe.given.items() if k in keys}
    try:
        config = OpenGRPOConfig(**values)
    except RecipeError as e:
        raise RecipeError(e.problems, recipe.source) from None
    except ValueError as e:
        raise RecipeError(str(e), recipe.source) from e
    config.gradient_checkpointing_auto = recipe.training.gradient_checkpointing_auto
    return config
