"""`build_trainer(recipe, ...)`: the one way a checked recipe becomes an `OpenGRPOTrainer`, shared by training
(open_grpo.train) and the benchmark's rows (open_grpo.bench.worker).

From the recipe: the real `OpenGRPOConfig` (TRL's own checks run here, before any model), the rewards through the
registry (their weights become TRL's `reward_weights`), the model's load arguments (revision, remote code,
attention, dtype), and TRL's LoRA / quantization configs. The caller brings the data, the tokenizer (the data needs
it first) and its callbacks.
"""

from __future__ import annotations

import logging

from open_grpo.data.models import resolve_model
from open_grpo.recipe.parsing import Recipe
from open_grpo.rewards.registry import build_rewards, parse_reward_specs
from open_grpo.trainer.config import trainer_config
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer
from open_grpo.trainer.lora import peft_config

logger = logging.getLogger(__name__)


def model_init_kwargs(recipe: Recipe, training) -> dict:
    """How TRL loads the model (and the recipe's own `model_init_kwargs` over it)."""
    model = recipe.model
    return {
        "revision": model.model_revision,
        "trust_remote_code": training.trust_remote_code,
        "attn_implementation": model.attn_implementation,
        "dtype": model.dtype,
        **(training.model_init_kwargs or {}),
    }


def build_trainer(recipe: Recipe, *, tokenizer, train_dataset, eval_dataset=None, callbacks=(), model_path=None,
                  training=None, tool_kwargs=None) -> OpenGRPOTrainer:  # fmt: skip
    """The trainer a recipe describes. `model_path`: the weights to start from (default: the recipe's model);
    `training`: its OpenGRPOConfig when the caller built it already (`trainer_config(recipe)`); `tool_kwargs`: the
    recipe's tools (environments.setup.trainer_tool_kwargs)."""
    from trl import get_quantization_config

    training = training or trainer_config(recipe)
    specs = parse_reward_specs(recipe.script.rewards, recipe.script.reward_funcs, training.reward_weights)
    reward_funcs, training.reward_weights = build_rewards(specs)
    if training.process_index == 0:
        logger.info("rewards: %s", ", ".join(f"{s.name} x{s.weight}" for s in specs))
    training.model_init_kwargs = model_init_kwargs(recipe, training)
    return OpenGRPOTrainer(
        model=str(model_path or resolve_model(recipe.model.model_name_or_path)),
        reward_funcs=reward_funcs,
        args=training,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(recipe.model),  # LoRA / QLoRA (use_peft): TRL wraps the model in the adapter
        quantization_config=get_quantization_config(recipe.model),
        callbacks=list(callbacks),
        **(tool_kwargs or {}),
    )
