"""`gradient_checkpointing: auto`: recompute activations only where the card cannot hold them.

Gradient checkpointing trades one extra forward per layer in the backward pass for memory. On a card whose memory
plan (preflight's) fits the run without it, it only costs time: ~0.1 s of a ~0.55 s training phase for the 1.5B
recipe on an H200 (docs/PERFORMANCE.md). `auto` asks the plan, with the real world size and cards, at start-up:
off when the plan without checkpointing has no problem, on otherwise (and where no plan can be made: no GPU, or a
model whose shape is unknown).

A recipe says `gradient_checkpointing: auto` (TRL's key is a bool): `take_auto` takes the value out before TRL parses
the recipe, and the trainer decides with `decide`.
"""

from __future__ import annotations

import logging

from . import preflight

logger = logging.getLogger(__name__)

AUTO = "auto"
KEY = "gradient_checkpointing"


def take_auto(config: dict, overrides: list[str]) -> tuple[dict, list[str], bool]:
    """(recipe mapping, overrides, whether checkpointing is `auto`) with `auto` replaced by `true` for TRL's parser.

    The last value wins, as in TRL's parser: `--gradient_checkpointing false` beats the recipe's `auto`."""
    flag = f"--{KEY}"
    auto = str(config.get(KEY, "")).lower() == AUTO
    kept, i = [], 0
    while i < len(overrides):
        word = overrides[i]
        if word == flag:  # `--gradient_checkpointing [value]`
            has_value = i + 1 < len(overrides) and not overrides[i + 1].startswith("--")
            value, step = (overrides[i + 1], 2) if has_value else ("true", 1)
        elif word.startswith(flag + "="):
            value, step = word.split("=", 1)[1], 1
        else:
            kept.append(word)
            i += 1
            continue
        auto = value.lower() == AUTO
        if not auto:
            kept.extend(overrides[i : i + step])
        i += step
    if str(config.get(KEY, "")).lower() == AUTO:
        config = {**config, KEY: True}  # TRL's key is a bool; the parser is given the value below
    if auto:
        kept.extend([flag, "true"])
    return config, kept, auto


def decide(training, max_prompt_tokens: int | None, model_path, engine=None) -> str:
    """Set `training.gradient_checkpointing` from the memory plan on this cluster (`engine`: vLLM's memory options,
    memory_plan.EngineMemory); returns why, for the log."""
    training.gradient_checkpointing = False
    plan = None
    if isinstance(model_path, str):
        plan = preflight.runtime_plan(training, max_prompt_tokens, model_path, engine=engine)
    if plan is None:
        training.gradient_checkpointing = True
        why = "on: no memory plan here (no GPU, or the model's shape is unknown)"
    elif plan.errors:
        training.gradient_checkpointing = True
        why = "on: without it the memory plan fails (" + "; ".join(plan.errors) + ")"
    else:
        why = "off: the memory plan fits the card without it"
    return f"gradient_checkpointing auto -> {why}"
