"""Which modules a LoRA adapter wraps, decided as PEFT decides it, from the model's config alone (no torch, no weights).

PEFT (0.21, `peft.tuners.tuners_utils.check_target_module_exists`) matches `target_modules` against the full name of
every module of the model (`model.named_modules()`): a string is a regular expression that must match a whole name
(`re.fullmatch`), except 'all-linear' (every linear layer but the output head); a list matches a name equal to an
item or ending in '.<item>'; None is PEFT's default for the model type. Modules in `modules_to_save` are never
adapted. Get-peft-model then fails when nothing matched ("Target modules ... not found in the base model") or when a
matched module is neither linear nor an embedding; TRL 1.16 refuses an adapter on `lm_head`.

The module names come from the model's shape (model_shapes.py: config.json, the hub cache or the built-in table).
Covered: the decoder-only layout of Llama, Mistral, Qwen2 and Qwen3 (Qwen3 adds per-head q_norm / k_norm);
tests/test_lora_targets.py compares the names with the real models' and this matcher with PEFT's on many patterns.
For another model type the check is skipped (PEFT still checks when the model loads).
"""

from __future__ import annotations

import re

COVERED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
ALL_LINEAR = "all-linear"  # PEFT's shorthand: every linear layer but the output head
OUTPUT_HEAD = "lm_head"
LINEAR, EMBEDDING, OTHER = "linear", "embedding", "other"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def module_names(shape) -> dict[str, str] | None:
    """Every named module of a model of this shape -> linear, embedding or other; None for a model type not covered."""
    if shape.model_type not in COVERED_MODEL_TYPES:
        return None
    out = {"model": OTHER, "model.embed_tokens": EMBEDDING, "model.layers": OTHER}
    for n in range(shape.num_hidden_layers):
        layer = f"model.layers.{n}"
        out[layer] = out[f"{layer}.self_attn"] = OTHER
        out.update({f"{layer}.self_attn.{name}": LINEAR for name in ATTENTION})
        if shape.model_type == "qwen3":
            out[f"{layer}.self_attn.q_norm"] = out[f"{layer}.self_attn.k_norm"] = OTHER
        out[f"{layer}.mlp"] = OTHER
        out.update({f"{layer}.mlp.{name}": LINEAR for name in MLP})
        out[f"{layer}.mlp.act_fn"] = out[f"{layer}.input_layernorm"] = out[f"{layer}.post_attention_layernorm"] = OTHER
    out["model.norm"] = out["model.rotary_emb"] = OTHER
    out[OUTPUT_HEAD] = LINEAR
    return out


def target_modules(value):
    """The recipe's `lora_target_modules` as PEFT should read it.

    TRL's ModelConfig turns a one-item list into a plain string, which PEFT reads as a regular expression over full
    module names: `[q_proj]` would then match nothing. A string that is a bare module name is that one-item list."""
    if isinstance(value, str) and value != ALL_LINEAR and re.fullmatch(r"[A-Za-z0-9_]+", value):
        return [value]
    return value


def matches(target, name: str, modules_to_save=None) -> bool:
    """Whether PEFT adapts the module `name` for this `target_modules` (a string other than 'all-linear', or a list)."""
    if any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in modules_to_save or ()):
        return False
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return name in target or any(name.endswith(f".{t}") for t in target)


def adapted_modules(modules: dict[str, str], target, modules_to_save=None) -> list[str]:
    """The names PEFT wraps with an adapter (`target` as the recipe gives it; None: give PEFT's default first)."""
    target = target_modules(target)
    if isinstance(target, str) and target.lower() == ALL_LINEAR:
        return [m for m, kind in modules.items() if kind == LINEAR and m != OUTPUT_HEAD]
    return [m for m in modules if matches(target, m, modules_to_save)]


def target_problems(shape, target, default_target, modules_to_save=None, target_parameters=None) -> list[str]:
    """Why PEFT (or TRL) would refuse these target modules on this model: nothing matched, a module it cannot adapt,
    the output head; or an invalid regular expression. [] for a model type not covered."""
    modules = module_names(shape)
    if modules is None or (target is None and target_parameters):
        return []
    chosen = default_target if target is None else target
    if isinstance(target_modules(chosen), str) and chosen.lower() != ALL_LINEAR:
        try:
            re.compile(chosen)
        except re.error as e:
            return [f"'lora_target_modules' {chosen!r} is not a valid regular expression ({e}): PEFT matches a string "
                    "against whole module names; give module names as a list, e.g. [q_proj, v_proj]"]  # fmt: skip
    adapted = adapted_modules(modules, chosen, modules_to_save)
    linear = sorted({m.rsplit(".", 1)[-1] for m, kind in modules.items() if kind == LINEAR})
    if not adapted:
        return [
            f"'lora_target_modules' {chosen!r} matches no module of this {shape.model_type} model, so PEFT would stop "
            f"('Target modules not found in the base model'): its linear layers are {', '.join(linear)} (or "
            f"'{ALL_LINEAR}'); a string is a regular expression over full names like 'model.layers.0.self_attn.q_proj'"
        ]
    problems = []
    unsupported = [m for m in adapted if modules[m] == OTHER]
    if unsupported:
        problems.append(
            f"'lora_target_modules' {chosen!r} selects {', '.join(unsupported[:3])}{' ...' if len(unsupported) > 3 else ''}, "
            f"which PEFT cannot adapt (only linear and embedding layers): name linear layers ({', '.join(linear)})"
        )
    if OUTPUT_HEAD in adapted:
        problems.append(
            f"'lora_target_modules' {chosen!r} selects {OUTPUT_HEAD!r}: TRL 1.16 refuses an adapter on the output head "
            "(it computes log-probabilities from lm_head.weight directly): leave it out"
        )
    return problems
