"""One recipe value against its key (schema.Key): a command-line word read as the key's type, then its type and its
choices checked. Each problem names the key, what it must be, and the value it got."""

from __future__ import annotations

import re
from typing import Any

import yaml

from open_grpo.errors import did_you_mean
from open_grpo.recipe.schema import Key

TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")
CONTAINERS = ("dict", "list", "list[str]", "list[int]", "list[float]")
MAX_SHOWN_CHOICES = 16


def from_command_line(key: Key, text: str) -> Any:
    """A `--key value` word as the key's type reads it: `--max_steps 3` is 3, `--rewards '[{name: format}]'` a list,
    `--solution_column null` None, and a word that fits no alternative stays a string for the type check to name."""
    alternatives = key.alternatives
    if "none" in alternatives and text.strip() in ("null", "Null", "NULL", "~"):
        return None
    if "bool" in alternatives and text.lower() in TRUE + FALSE:
        return text.lower() in TRUE
    for kind in (int, float):
        if kind.__name__ in alternatives:
            try:
                return kind(text)
            except ValueError:
                pass
    if any(a in CONTAINERS or a == "any" for a in alternatives):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, (dict, list)) or "str" not in alternatives:
            return value
    return text


def normalized(key: Key, value: Any) -> Any:
    """A YAML value in the key's own type where YAML and argparse differ: a float key given 1 holds 1.0, and YAML's
    '3e-6' (a string to YAML 1.1) is the number argparse would make of it."""
    alternatives = key.alternatives
    if isinstance(value, str) and "str" not in alternatives:
        for kind in (int, float):
            if kind.__name__ in alternatives:
                try:
                    return kind(value)
                except ValueError:
                    pass
    if type(value) is int and "float" in alternatives and "int" not in alternatives:
        return float(value)
    return value


def _fits(value: Any, alternative: str) -> bool:
    if alternative == "any":
        return True
    if alternative == "none":
        return value is None
    if alternative == "bool":
        return isinstance(value, bool)
    if alternative == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if alternative == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if alternative == "str":
        return isinstance(value, str)
    if alternative == "dict":
        return isinstance(value, dict)
    if alternative.startswith("list"):
        inner = alternative[5:-1]
        return isinstance(value, list) and all(_fits(v, inner) for v in value) if inner else isinstance(value, list)
    return False


def _type_name(key: Key) -> str:
    names = {"none": "null", "dict": "a mapping", "list": "a list"}
    return " or ".join(names.get(a, a.replace("list[", "a list of ").rstrip("]")) for a in key.alternatives)


def type_problem(key: Key, value: Any, from_cli: bool = False) -> str | None:
    if any(_fits(value, a) for a in key.alternatives):
        return None
    hint = ""
    if from_cli and isinstance(value, str) and any(a in CONTAINERS for a in key.alternatives):
        hint = " (on the command line as YAML or JSON, e.g. '[a, b]' or '{k: v}')"
    elif isinstance(value, bool) and "str" in key.alternatives:
        hint = ' (YAML reads an unquoted no, yes, on, off as a boolean: quote it, e.g. "no")'
    example = f", e.g. {key.example}" if key.example else ""
    return f"{key.name!r} must be {_type_name(key)}{example} ({key.owner}), got {value!r}{hint}"


def choice_problem(key: Key, value: Any) -> str | None:
    """The first value of `value` (a string, a space-separated string where the key splits, or a list) that is not
    one of the key's choices (nor matches its pattern)."""
    if not key.choices:
        return None
    if isinstance(value, str):
        items = value.split() if key.split else [value]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        if item in key.choices or (key.pattern and isinstance(item, str) and re.fullmatch(key.pattern, item)):
            continue
        shown = ", ".join(map(str, key.choices[:MAX_SHOWN_CHOICES])) + (
            " ..." if len(key.choices) > MAX_SHOWN_CHOICES else ""
        )
        extra = " or a hub kernel 'org/repo[:function]'" if key.pattern else ""
        return (
            f"{key.name!r} must be one of {shown}{extra} ({key.owner}), got {item!r}.{did_you_mean(item, key.choices)}"
        )
    return None


def checked(key: Key, value: Any, from_cli: bool) -> tuple[Any, str | None]:
    """(the value as the key holds it, the problem with it or None)."""
    value = from_command_line(key, value) if from_cli and isinstance(value, str) else normalized(key, value)
    problem = type_problem(key, value, from_cli) or choice_problem(key, value)
    return value, problem


def section_problems(obj, section: str) -> tuple[list[str], bool]:
    """(the type and choice problems of every key of a section held by `obj`, a config built in code; whether every
    type was right, so that the value rules can read them)."""
    from open_grpo.recipe.schema import keys

    problems, types_ok = [], True
    for key in keys().values():
        if key.section == section and hasattr(obj, key.name):
            value = getattr(obj, key.name)
            wrong_type = type_problem(key, value)
            types_ok = types_ok and not wrong_type
            problem = wrong_type or choice_problem(key, value)
            if problem:
                problems.append(problem)
    return problems, types_ok
