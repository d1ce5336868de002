"""Write `trl_schema.json`: the recipe keys of the installed TRL, transformers and PEFT, for the torch-free check.

    python -m open_grpo.recipe.snapshot            # rewrite src/open_grpo/recipe/trl_schema.json
    python -m open_grpo.recipe.snapshot --check    # exit 1 if the file differs from the installed libraries

Run it after changing the pinned versions (tests/test_recipe_schema.py fails until then). It reads, from the live
classes and tables (importing torch):
- every field of `trl.GRPOConfig` (with transformers' `TrainingArguments`) and `trl.ModelConfig`: its type, default,
  and choices from the field's metadata or its enum type (SchedulerType, OptimizerNames, IntervalStrategy, ...);
- for GRPOConfig's own string options that TRL checks only where it uses them (`loss_type`, `scale_rewards`,
  `importance_sampling_level`, ...): every value its trainer compares the option with; any other value ends in
  TRL's "Unknown ..." error mid-training;
- `report_to`: transformers' reporting integrations; `attn_implementation`: the attention functions transformers
  registers, and its hub-kernel pattern; `lora_task_type`: PEFT's task types;
- PEFT's default LoRA target modules for the model types lora_targets.py knows.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import json
import sys
import typing
from importlib.metadata import version

from open_grpo.errors import EXIT_CHECK_FAILED, EXIT_OK
from open_grpo.recipe.lora_targets import COVERED_MODEL_TYPES
from open_grpo.recipe.schema import SNAPSHOT, describe_type

# transformers.integrations.hub_kernels.is_kernel: an attention kernel from the hub, 'org/repo[@rev][:function]'
KERNEL_PATTERN = r"[^/:]+/[^/:]+(?:@[^/:]+)?(?::[^/:]+)?"
# Types TRL and PEFT accept beyond the field's annotation:
ALSO = {
    "scale_rewards": "bool",  # GRPOConfig.__post_init__ maps True -> 'group', False -> 'none'
    "lora_target_modules": "str",  # PEFT reads a string as 'all-linear' or a regular expression over module names
}


def trl_branch_choices(module, names) -> dict[str, list[str]]:
    """Option -> the string values `module` compares `self.<option>` / `args.<option>` with (==, !=, in, not in)."""
    found: dict[str, set] = {name: set() for name in names}
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.left, ast.Attribute)):
            continue
        owner, name = node.left.value, node.left.attr
        if not (isinstance(owner, ast.Name) and owner.id in ("self", "args") and name in found):
            continue
        op, right = node.ops[0], node.comparators[0]
        if isinstance(op, (ast.Eq, ast.NotEq)):
            values = [right]
        elif isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.List, ast.Tuple, ast.Set)):
            values = right.elts
        else:
            continue
        found[name] |= {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return {name: sorted(values) for name, values in found.items() if len(values) > 1}


def _owner(cls, name: str) -> str:
    return next(k.__name__ for k in cls.__mro__ if name in k.__dict__.get("__annotations__", {}))


def _default(f: dataclasses.Field):
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return value.value if isinstance(value, enum.Enum) else value


def live_snapshot() -> dict:
    """The snapshot as the installed libraries give it."""
    import trl.trainer.grpo_trainer
    from peft import TaskType
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from trl import GRPOConfig, ModelConfig

    own_strings = [f.name for f in dataclasses.fields(GRPOConfig) if _owner(GRPOConfig, f.name) == "GRPOConfig"]
    branches = trl_branch_choices(trl.trainer.grpo_trainer, own_strings)
    special = {
        "report_to": {"choices": ["all", "none", *INTEGRATION_TO_CALLBACK]},
        "attn_implementation": {
            "choices": ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()],
            "pattern": KERNEL_PATTERN,
        },
        "lora_task_type": {"choices": [t.value for t in TaskType]},
    }
    keys = {}
    for cls, section in ((GRPOConfig, "training"), (ModelConfig, "model")):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            kind, choices, split = describe_type(hints[f.name])
            if f.name in ALSO:
                kind = f"{kind}|{ALSO[f.name]}"
            choices = f.metadata.get("choices") or choices or branches.get(f.name)
            entry = {"section": section, "owner": _owner(cls, f.name), "type": kind, "default": _default(f),
                     "choices": list(choices) if choices else None, **special.get(f.name, {})}  # fmt: skip
            if split:
                entry["split"] = True
            keys[f.name] = entry
    return {
        "versions": {name: version(name) for name in ("trl", "transformers", "peft")},
        "keys": keys,
        "peft_default_targets": {t: sorted(PEFT_TARGETS[t]) for t in COVERED_MODEL_TYPES},
    }


def render(snapshot: dict) -> str:
    return json.dumps(snapshot, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render(live_snapshot())
    if "--check" in argv:
        same = SNAPSHOT.read_text() == text
        print(f"{SNAPSHOT.name}: {'up to date' if same else 'differs from the installed libraries: regenerate it'}")
        return EXIT_OK if same else EXIT_CHECK_FAILED
    SNAPSHOT.write_text(text)
    print(f"wrote {SNAPSHOT}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
