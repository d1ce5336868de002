"""Recipes: the keys a run is configured with, parsed and checked in one pass, without torch.

A recipe is one flat YAML file (or a name under recipes/) plus `--key value` overrides. `schema` knows every key
(open_grpo's own in `options.py` and recipe_keys.py, TRL's and transformers' from a snapshot of their classes),
`overrides` reads the command line, `parsing` merges and checks everything (`validation`: unknown keys, types,
choices, counts, cross-field rules, rewards, mixtures, LoRA targets, the batch arithmetic of the target world size)
and reports every problem in one `RecipeError`. Training then builds TRL's real config from the checked values
(grpo_config.py), whose own checks have the last word before any model loads.
"""

from open_grpo.errors import RecipeError
from open_grpo.recipe.parsing import Recipe, available_recipes, load_recipe, recipe_from_keys, resolve_recipe

__all__ = ["Recipe", "RecipeError", "available_recipes", "load_recipe", "recipe_from_keys", "resolve_recipe"]
