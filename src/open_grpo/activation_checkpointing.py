"""`gradient_checkpointing: auto`: recompute activations only where the card cannot hold them.

Gradient checkpointing trades one extra forward per layer in the backward pass for memory. On a card whose memory
plan (preflight's) fits the run without it, it only costs time: ~0.1 s of a ~0.55 s training phase for the 1.5B
recipe on an H200 (docs/PERFORMANCE.md). `auto` asks the plan, with the real world size and cards, at start-up:
off when the plan without checkpointing has no problem, on otherwise (and where no plan can be made: no GPU, or a
model whose shape is unknown).

A recipe says `gradient_checkpointing: auto` (TRL's key is a bool): the recipe layer reads it as
`gradient_checkpointing: true` with `gradient_checkpointing_auto` set (recipe/parsing.py), and the trainer decides with
`decide`.
"""

from __future__ import annotations

import logging

from . import preflight

logger = logging.getLogger(__name__)


def decide(training, model_path) -> str:
    """Set `training.gradient_checkpointing` from the memory plan on this cluster; returns why, for the log."""
    training.gradient_checkpointing = False
    plan = preflight.runtime_plan(training, model_path) if isinstance(model_path, str) else None
    if plan is None:
        training.gradient_checkpointing = True
        why = "on: no memory plan here (no GPU, or the model's shape is unknown)"
    elif plan.errors:
        training.gradient_checkpointing = True
        why = "on: without it the memory plan fails (" + "; ".join(plan.errors) + ")"
    else:
        why = "off: the memory plan fits the card without it"
    return f"gradient_checkpointing auto -> {why}"
