"""The one reader of command-line overrides: `--key value`, `--key=value`, a bare `--flag` (true) and `--no_flag`
(false), later words winning, as TRL's parser reads them. Values stay words here; values.py reads each as its key's
type. Used by `open-grpo train/check/launch-args`, `python -m open_grpo.train` and the benchmark."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from open_grpo.errors import did_you_mean


def parse_overrides(words: Iterable[str], known: Iterable[str]) -> tuple[dict[str, str | bool], list[str]]:
    """({key: word, or True/False for a bare flag / `--no_<key>`}, problems: stray words and unknown keys)."""
    words, known = list(words), set(known)
    values: dict[str, str | bool] = {}
    problems = []
    stray = []
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            stray.append(word)
            i += 1
            continue
        name, has_equals, text = word[2:].partition("=")
        key = name.replace("-", "_")
        if has_equals:
            value, i = text, i + 1
        elif i + 1 < len(words) and not words[i + 1].startswith("--"):
            value, i = words[i + 1], i + 2
        else:
            value, i = True, i + 1
        if key not in known and key.startswith("no_") and key[3:] in known and value is True:
            key, value = key[3:], False
        if key not in known:
            hint = did_you_mean(key, sorted(known), quote="'--{}'")
            problems.append(
                f"unknown command-line override '--{name}'.{hint} Overrides are recipe keys: --<key> <value>"
            )
            continue
        values[key] = value
    if stray:
        problems.insert(
            0, f"command-line value(s) {stray} without a --<key> before them: overrides are --<key> <value>"
        )
    return values, problems


def to_words(values: Mapping) -> list[str]:
    """Recipe keys as override words (mappings and lists as JSON): the inverse of `parse_overrides`."""
    words = []
    for key, value in values.items():
        if isinstance(value, (dict, list)):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = str(value).lower()
        elif value is None:
            text = "null"
        else:
            text = str(value)
        words += [f"--{key}", text]
    return words
