"""Every key a recipe may set: its section, owner, type, default and choices, without importing torch or TRL's trainer.

A recipe fills three sections:

    script    ScriptArguments (recipe_keys.py): data, prompts, rewards, evaluation set, resume
    training  OpenGRPOConfig = open_grpo's OpenGRPOOptions (options.py) + TRL's GRPOConfig (+ transformers'
              TrainingArguments)
    model     TRL's ModelConfig: model id, revision, dtype, attention, LoRA / QLoRA

open_grpo's own dataclasses are read directly. TRL's and transformers' (which import torch) are read from
`trl_schema.json`, a snapshot of the installed classes written by `python -m open_grpo.recipe.snapshot`; a test
regenerates it and fails when it differs, so it cannot drift from the pinned versions.

A type is a string of alternatives: `int|none`, `list[str]|str|none`, ... (`describe_type`); choices come from field
metadata (`choices`), enum types (transformers' SchedulerType, OptimizerNames, IntervalStrategy, ...) and, for TRL's
string options it only checks where it uses them (`loss_type`, `scale_rewards`, ...), from the values its trainer
compares them with (snapshot.py).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from open_grpo.recipe.keys import ScriptArguments
from open_grpo.recipe.options import OpenGRPOOptions

SNAPSHOT = Path(__file__).with_name("trl_schema.json")
SIMPLE = {bool: "bool", int: "int", float: "float", str: "str", type(None): "none"}


@dataclass(frozen=True)
class Key:
    name: str
    section: str  # "script", "training" or "model"
    owner: str  # the dataclass that declares it
    type: str  # alternatives joined by '|': none, bool, int, float, str, dict, list, list[str|int|float], any
    default: Any
    choices: tuple | None = None
    split: bool = False  # a string value is a space-separated list of choices (transformers' debug, fsdp)
    pattern: str | None = None  # a regular expression of values accepted beside the choices
    example: str | None = None  # a value of the right shape, for the message of a wrong one

    @property
    def alternatives(self) -> list[str]:
        return self.type.split("|")


def describe_type(hint) -> tuple[str, tuple | None, bool]:
    """(type string, choices from an enum or Literal, whether a string value splits into choices) of a type hint."""
    alternatives: list[str] = []
    choices: list = []
    split = False
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for arg in args:
        origin = typing.get_origin(arg)
        if arg in SIMPLE:
            alternatives.append(SIMPLE[arg])
        elif isinstance(arg, type) and issubclass(arg, enum.Enum):
            alternatives.append("str")
            choices += [m.value for m in arg]
        elif origin is typing.Literal:
            for value in typing.get_args(arg):
                alternatives.append(SIMPLE[type(value)])
                if isinstance(value, str):
                    choices.append(value)
        elif arg in (list, tuple) or origin in (list, tuple):
            inner = typing.get_args(arg)[:1]
            if inner and isinstance(inner[0], type) and issubclass(inner[0], enum.Enum):
                alternatives.append("list[str]")
                choices += [m.value for m in inner[0]]
                split = True
            elif inner and inner[0] in (str, int, float):
                alternatives.append(f"list[{SIMPLE[inner[0]]}]")
            else:
                alternatives.append("list")
        elif arg is dict or origin is dict:
            alternatives.append("dict")
        else:  # a class no YAML value can be (accelerate's ParallelismConfig): its own constructor judges it
            alternatives.append("any")
    unique = list(dict.fromkeys(alternatives))
    return "|".join(unique), (tuple(dict.fromkeys(choices)) if choices else None), split and "str" in unique


def _own_keys(cls, section: str) -> dict[str, Key]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, enum_choices, split = describe_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        choices = tuple(f.metadata["choices"]) if "choices" in f.metadata else enum_choices
        out[f.name] = Key(
            f.name, section, cls.__name__, kind, default, choices, split, example=f.metadata.get("example")
        )
    return out


def read_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


@functools.cache
def keys() -> dict[str, Key]:
    """Every recipe key -> its `Key` (open_grpo's own and TRL's, from the snapshot)."""
    snapshot = read_snapshot()
    out = {}
    for name, entry in snapshot["keys"].items():
        choices = tuple(entry["choices"]) if entry.get("choices") is not None else None
        out[name] = Key(name, entry["section"], entry["owner"], entry["type"], entry["default"], choices,
                        entry.get("split", False), entry.get("pattern"))  # fmt: skip
    out.update(_own_keys(OpenGRPOOptions, "training"))
    out.update(_own_keys(ScriptArguments, "script"))
    return out


def defaults(section: str) -> dict[str, Any]:
    """Every key of a section at its default."""
    return {name: copy.deepcopy(key.default) for name, key in keys().items() if key.section == section}
