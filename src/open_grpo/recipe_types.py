"""Type checks of recipe keys against the dataclasses they belong to, before TRL's parser sees them: every unknown
key (with a did-you-mean) and every wrong type, reported together."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import itertools
import types
import typing
from typing import Any

from .recipe_keys import ScriptArguments


def dataclass_types(for_planning: bool = False) -> tuple[type, type, type]:
    """The three dataclasses a recipe fills: open_grpo's keys, TRL's GRPOConfig (as recipes parse it), ModelConfig."""
    # TRL pulls in torch and transformers (seconds): imported when a recipe is checked, not when the CLI starts
    from trl import ModelConfig

    from .grpo_config import PlanningGRPOConfig, RecipeGRPOConfig

    return ScriptArguments, PlanningGRPOConfig if for_planning else RecipeGRPOConfig, ModelConfig


# Keys whose YAML value may also be a string, which TRL passes through: PEFT's 'all-linear' or a module-name regex.
ALSO_STR = ("lora_target_modules",)


def _fields_by_name() -> dict[str, tuple[type, Any]]:
    """Every recipe key -> (its dataclass, its resolved type)."""
    out = {}
    for cls in reversed(dataclass_types()):  # ScriptArguments wins a name clash
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                out[f.name] = (cls, hints[f.name] | str if f.name in ALSO_STR else hints[f.name])
    return out


def _type_ok(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits a dataclass field type (strings that argparse would convert are accepted)."""
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return (
            isinstance(value, list) and all(_type_ok(v, args[0]) for v in value) if args else isinstance(value, list)
        )
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp} or value in tp.__members__
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or _parses(value, int)
    if tp is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _parses(value, float)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a type we do not know how to check: let TRL's parser decide


def _parses(value: Any, kind: type) -> bool:
    if not isinstance(value, str):
        return False
    try:
        kind(value)  # YAML reads '3e-6' as a string; argparse converts it like a command-line value
        return True
    except ValueError:
        return False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_keys_and_types(config: dict, source: str) -> list[str]:
    known = _fields_by_name()
    problems = []
    for key, value in config.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"unknown key {key!r}.{hint} (keys are fields of ScriptArguments, GRPOConfig, ModelConfig)"
            )
            continue
        cls, tp = known[key]
        if not _type_ok(value, tp):
            problems.append(f"{key!r} must be {_type_name(tp)} ({cls.__name__}), got {value!r}")
    return problems


def check_override_keys(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """Every `--key` of the command-line overrides is a recipe key (or `--no_<key>` for a boolean one).

    argparse would take an unknown `--key` as a prefix of a known one (`--learning_rat`) or reject it with its whole
    usage (200+ options); here each gets one line with the closest key.
    """
    known = _fields_by_name()
    names = set(known) | {f"no_{k}" for k, (_, tp) in known.items() if _type_ok(True, tp)}
    problems = []
    stray = list(itertools.takewhile(lambda t: not t.startswith("--"), overrides))
    if stray:
        problems.append(f"command-line value(s) {stray} before any --<key>: overrides are --<key> <value>")
    for token in overrides:
        if not token.startswith("--"):
            continue
        key = token[2:].split("=", 1)[0]
        if key.replace("-", "_") in names:
            continue
        close = difflib.get_close_matches(key.replace("-", "_"), sorted(names), n=1)
        hint = f" Did you mean '--{close[0]}'?" if close else ""
        problems.append(f"unknown command-line override '--{key}'.{hint} Overrides are recipe keys: --<key> <value>")
    return problems
