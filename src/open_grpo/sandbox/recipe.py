"""The recipe's `sandbox:` settings, and the one sandbox a training process shares (rewards and tools alike).

    sandbox: {backend: auto, workers: 8, wall_s: 5.0, memory_mb: 512}   # any of BACKEND_KEYS and Limits' fields

A reward or tool that runs code is marked `@needs_sandbox` and calls `shared_sandbox()`. Whenever a recipe uses
one, `open-grpo check` and the trainer's start-up run the sandbox's canary and refuse (exit 2) a backend whose
isolation does not hold here; the chosen backend and what it does not isolate are logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from open_grpo.errors import did_you_mean
from open_grpo.sandbox.backends import SandboxUnavailable
from open_grpo.sandbox.limits import LIMIT_KEYS, Limits
from open_grpo.sandbox.sandbox import Sandbox
from open_grpo.sandbox.sandbox import settings_problems as sandbox_settings_problems

logger = logging.getLogger(__name__)

BACKEND_KEYS = ("backend", "workers")
SETTING_KEYS = BACKEND_KEYS + LIMIT_KEYS

_shared: Sandbox | None = None
_settings: dict = {}
_lock = threading.Lock()


def needs_sandbox(func: Callable) -> Callable:
    """Mark a reward (or tool) that runs code in the shared sandbox: recipes that use it get the canary check."""
    func.needs_sandbox = True
    return func


def settings_problems(settings) -> list[str]:
    """Every problem of a recipe's `sandbox:` value, one line each (unknown keys with a did-you-mean, bad values)."""
    if settings is None:
        return []
    if not isinstance(settings, dict):
        return [f"'sandbox' must be a mapping, e.g. {{backend: auto, wall_s: 5.0}}, got {settings!r}"]
    problems = []
    for key in settings:
        if key not in SETTING_KEYS:
            problems.append(
                f"sandbox: unknown key {key!r}.{did_you_mean(key, SETTING_KEYS)} Keys: {', '.join(SETTING_KEYS)}"
            )
    if problems:
        return problems
    limits = Limits(**{k: v for k, v in settings.items() if k in LIMIT_KEYS})
    found = sandbox_settings_problems(settings.get("backend", "auto"), limits, settings.get("workers"))
    return [f"{p} (recipe key 'sandbox')" for p in found]


def _build(settings: dict) -> Sandbox:
    limits = Limits(**{k: v for k, v in settings.items() if k in LIMIT_KEYS})
    return Sandbox(backend=settings.get("backend", "auto"), limits=limits, workers=settings.get("workers"))


def configure(settings: dict | None) -> None:
    """Use these settings for the shared sandbox (a sandbox made with other settings is closed)."""
    global _shared, _settings
    settings = dict(settings or {})
    with _lock:
        if _shared is not None and settings != _settings:
            _shared.close()
            _shared = None
        _settings = settings


def shared_sandbox() -> Sandbox:
    """The process's sandbox, made on first use from the configured settings (defaults: backend auto)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = _build(_settings)
        return _shared


def uses_sandbox(funcs: Iterable[Callable]) -> bool:
    return any(getattr(f, "needs_sandbox", False) for f in funcs)


def startup_problems(settings: dict | None, funcs: Iterable[Callable]) -> list[str]:
    """For a recipe whose rewards or tools run code: configure the shared sandbox, run its canary and return what
    does not hold (empty: ready). Logs the backend and what it isolates. Nothing to do for other recipes."""
    if not uses_sandbox(funcs):
        return []
    configure(settings)
    try:
        sandbox = shared_sandbox()
    except SandboxUnavailable as e:
        return [str(e)]
    problems = [f"sandbox ({sandbox.backend}): {p}" for p in sandbox.canary()]
    if not problems:
        logger.info("sandbox: %s", sandbox.describe())
    return problems


def recipe_sandbox(recipe) -> str | None:
    """For a recipe whose rewards run code: run the sandbox's canary (`RecipeError` listing what does not hold) and
    return the one line saying what it isolates; None for other recipes (open-grpo check, the trainer's builder)."""
    from open_grpo.errors import RecipeError
    from open_grpo.rewards.registry import load_reward, parse_reward_specs

    specs = parse_reward_specs(recipe.script.rewards, recipe.script.reward_funcs, recipe.training.reward_weights)
    funcs = [load_reward(spec.name).func for spec in specs]
    problems = startup_problems(recipe.script.sandbox, funcs)
    if problems:
        raise RecipeError(problems, recipe.source or recipe.path)
    return shared_sandbox().describe() if uses_sandbox(funcs) else None
