"""What a reward may declare beside its signature, for the registry (registry.py) to act on.

A reward is a plain function `reward(completions, *, <parameters>, **columns)`. Three optional declarations, set
with the decorators below, cover the rewards that need more than their signature says:

- `checks_params(check)`: `check(params) -> list[str]` runs when the recipe is parsed (also by `open-grpo check`,
  on any machine): the problems of the parameters' values, beyond their types (a template's placeholders, a path
  that cannot exist). `params` holds every parameter, defaults filled in.
- `checks_at_start(check)`: `check(params) -> list[str]` runs once when the training run builds its rewards, on the
  machine that trains: what only that machine can know (an environment variable set, a server reachable).
- `runs_in_trainer(build)`: the reward is not called by open_grpo at all: `build(params)` returns what TRL's
  `GRPOTrainer(reward_funcs=...)` runs itself (a `PreTrainedModel` for a reward model, which TRL places, shards and
  scores). The function then only documents the reward and its parameters; `time_limit` and `on_error` do not apply.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

Check = Callable[[dict[str, Any]], list[str]]


def checks_params(check: Check) -> Callable[[Callable], Callable]:
    def mark(func: Callable) -> Callable:
        func.check_params = check
        return func

    return mark


def checks_at_start(check: Check) -> Callable[[Callable], Callable]:
    def mark(func: Callable) -> Callable:
        func.check_at_start = check
        return func

    return mark


def runs_in_trainer(build: Callable[[dict[str, Any]], Any]) -> Callable[[Callable], Callable]:
    def mark(func: Callable) -> Callable:
        func.build_for_trainer = build
        return func

    return mark


def param_check(func: Callable) -> Check | None:
    return getattr(func, "check_params", None)


def start_check(func: Callable) -> Check | None:
    return getattr(func, "check_at_start", None)


def trainer_builder(func: Callable) -> Callable[[dict[str, Any]], Any] | None:
    return getattr(func, "build_for_trainer", None)


def declared_problems(where: str, func: Callable, entry: dict, signature: dict[str, Any]) -> list[str]:
    """A recipe entry's problems with what `func` declares: required parameters (keyword-only, no default) left out,
    `time_limit` / `on_error` on a reward TRL runs itself, and the reward's own `checks_params`. `signature`: its
    keyword-only parameters and their defaults; `entry`: the recipe's mapping."""
    empty = inspect.Parameter.empty
    missing = [k for k, d in signature.items() if d is empty and k not in entry]
    out = [f"{where}: parameter {k!r} is required" for k in missing]
    if trainer_builder(func) is not None:
        out += [
            f"{where}: {key!r} does not apply: TRL's trainer runs this reward inside the step (on every rank, in "
            "step with the others), where it cannot be abandoned or skipped; remove it"
            for key in ("time_limit", "on_error")
            if key in entry
        ]
    check = param_check(func)
    if check is not None and not missing:
        params = {
            **{k: d for k, d in signature.items() if d is not empty},
            **{k: entry[k] for k in signature if k in entry},
        }
        out += [f"{where}: {p}" for p in check(params)]
    return out
