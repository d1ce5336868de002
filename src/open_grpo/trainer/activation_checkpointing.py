"""`gradient_checkpointing: auto`: recompute activations only where the card cannot hold them.

Gradient checkpointing trades one extra forward per layer in the backward pass for memory. On a card whose memory
plan (preflight's) fits the run without it, it only costs time: ~0.1 s of a ~0.55 s training phase for the 1.5B
recipe on an H200 (docs/PERFORMANCE.md). `auto` asks the plan, with the real world size and cards, at start-up:
off when the plan without checkpointing has no problem, on otherwise (and where no plan can be made: no GPU, or a
model whose shape is unknown).

A recipe says `gradient_checkpointing: auto` (TRL's key is a bool): the recipe layer reads it as
`gradient_checkpointing: true` with `gradient_checkpointing_auto` set (recipe/parsing.py), and the trainer decides with
`decide` (for a LoRA/QLoRA run, from the adapter's plan); `open-grpo check` says what it would choose on the planned
cards (`choice`).
"""

from __future__ import annotations

import logging

from open_grpo.planning import preflight

logger = logging.getLogger(__name__)

# Off only with this share of the card left free by the plan without checkpointing: the plan is held within
# 0.9-1.2x of measured peaks (tests/test_memory_plan.py), so a plan at the card's edge may not fit.
AUTO_HEADROOM = 0.10


def choice(plan) -> tuple[bool, str]:
    """(on, why) from the memory plan made without checkpointing (None: no plan could be made)."""
    if plan is None:
        return True, "on: no memory plan here (no GPU, or the model's shape is unknown)"
    if plan.errors:
        return True, "on: without it the memory plan fails (" + "; ".join(plan.errors) + ")"
    memory = plan.data.get("memory_gib") or {}
    total, card = memory.get("total"), memory.get("card")
    if total is not None and card and total > (1 - AUTO_HEADROOM) * card:
        return True, (
            f"on: without it the plan needs {total:.1f} of {card:g} GiB, within the plan's margin of the card "
            f"(off needs {AUTO_HEADROOM:.0%} of the card free)"
        )
    return False, "off: the memory plan fits the card without it"


def decide(training, model_path, peft_config=None, quantization_config=None, engine=None) -> str:
    """Set `training.gradient_checkpointing` from the memory plan on this cluster (of the LoRA/QLoRA run where
    `peft_config`/`quantization_config` say so; `engine`: vLLM's memory options, memory_plan.EngineMemory); returns
    why, for the log."""
    training.gradient_checkpointing = False
    plan = None
    if isinstance(model_path, str):
        plan = preflight.runtime_plan(training, model_path, peft_config=peft_config,
                                      quantization_config=quantization_config, engine=engine)  # fmt: skip
    training.gradient_checkpointing, why = choice(plan)
    return f"gradient_checkpointing auto -> {why}"
