"""The reward registry: the entry-point group `open_grpo.rewards`, the recipe's reward list, and TRL's callables.

A third-party package registers a reward with

    [project.entry-points."open_grpo.rewards"]
    my_reward = "my_pkg.rewards:my_reward"

and, once installed, `rewards: [{name: my_reward}]` works in any recipe. Every problem (unknown name, a name from two
distributions, a plugin that fails to import, an unknown parameter) is raised at start-up, before any model loads.
A reward may check its parameters' values too: a `check_params(params) -> list[str]` attribute of the function.
"""

from __future__ import annotations

import inspect
import logging
import math
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from open_grpo.errors import RecipeError, did_you_mean
from open_grpo.rewards.events import collecting, note
from open_grpo.rewards.hooks import declared_problems, start_check, trainer_builder
from open_grpo.rewards.limits import RewardTimeout, TimeLimitedCaller, as_score, default_time_limit

logger = logging.getLogger(__name__)

GROUP = "open_grpo.rewards"
RESERVED_KEYS = ("name", "weight", "on_error", "time_limit")
ON_ERROR = ("none", "zero", "raise")


class RewardSpecError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class RewardInfo:
    name: str
    func: Callable
    distribution: str
    target: str  # "module:attr"

    @property
    def params(self) -> dict[str, Any]:
        """Keyword-only parameters and their defaults: what a recipe may set beside the name."""
        sig = inspect.signature(self.func)
        return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}

    def with_defaults(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with every parameter the recipe left out at its default (required ones have none)."""
        return {**{k: v for k, v in self.params.items() if v is not inspect.Parameter.empty}, **params}

    @property
    def doc(self) -> str:
        return (inspect.getdoc(self.func) or "").split("\n")[0]


_entry_points: dict[str, list[tuple[str, EntryPoint]]] | None = None
_loaded: dict[str, RewardInfo] = {}
_lock = threading.RLock()


def _discover() -> dict[str, list[tuple[str, EntryPoint]]]:
    """name -> [(distribution, entry point)], one row per distinct distribution. Read once per process."""
    global _entry_points
    with _lock:
        if _entry_points is None:
            found: dict[str, dict[str, EntryPoint]] = {}
            for ep in entry_points(group=GROUP):
                dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
                found.setdefault(ep.name, {})[dist] = ep  # the same distribution seen twice on sys.path counts once
            _entry_points = {name: sorted(by_dist.items()) for name, by_dist in found.items()}
        return _entry_points


def reward_names() -> list[str]:
    return sorted(_discover())


def load_reward(name: str) -> RewardInfo:
    """The reward registered under `name`, imported on first use. Raises `RewardSpecError` with the reason."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        candidates = _discover().get(name)
        if not candidates:
            names = reward_names()
            hint = did_you_mean(name, names)
            raise RewardSpecError([f"Unknown reward {name!r}.{hint} Available: {', '.join(names)}"])
        if len(candidates) > 1:
            dists = " and ".join(f"{d!r} ({ep.value})" for d, ep in candidates)
            raise RewardSpecError([f"reward {name!r} is registered by two distributions: {dists}; uninstall one"])
        dist, ep = candidates[0]
        try:
            func = ep.load()
        except Exception as e:
            raise RewardSpecError(
                [
                    f"reward plugin {name!r} ({ep.value}, distribution {dist!r}) failed to import: {type(e).__name__}: {e}"
                ]
            ) from e
        if not callable(func):
            raise RewardSpecError([f"reward plugin {name!r} ({ep.value}, distribution {dist!r}) is not callable"])
        info = RewardInfo(name=name, func=func, distribution=dist, target=ep.value)
        _loaded[name] = info
        return info


@dataclass
class RewardSpec:
    name: str
    weight: float = 1.0
    on_error: str = "none"
    time_limit: float | None = None  # seconds for one call over a batch; None: the reward's default (limits.py)
    params: dict[str, Any] = field(default_factory=dict)


def parse_reward_specs(rewards, reward_funcs=None, reward_weights=None) -> list[RewardSpec]:
    """The recipe's `rewards` (or TRL's form `reward_funcs` + `reward_weights`) -> checked `RewardSpec`s."""
    problems: list[str] = []
    if rewards and reward_funcs:
        raise RewardSpecError(["give either 'rewards' or 'reward_funcs' (+ 'reward_weights'), not both"])
    if reward_funcs:
        if reward_weights is not None and len(reward_weights) != len(reward_funcs):
            raise RewardSpecError(
                [f"'reward_weights' has {len(reward_weights)} values for {len(reward_funcs)} 'reward_funcs'"]
            )
        rewards = [
            {"name": n, "weight": reward_weights[i] if reward_weights else 1.0} for i, n in enumerate(reward_funcs)
        ]
    elif rewards and reward_weights is not None:
        problems.append("'reward_weights' goes with 'reward_funcs'; with 'rewards' give each its own 'weight'")
    if not rewards:
        raise RewardSpecError(problems + ["no rewards: set 'rewards: [{name: accuracy}, ...]'"])
    if not isinstance(rewards, list):
        raise RewardSpecError([f"'rewards' must be a list of mappings, e.g. [{{name: accuracy}}], got {rewards!r}"])

    specs = []
    for i, entry in enumerate(rewards):
        where = f"rewards[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"{where} must be a mapping with a 'name', got {entry!r}")
            continue
        name = entry["name"]
        try:
            info = load_reward(name)
        except RewardSpecError as e:
            problems.extend(f"{where}: {p}" for p in e.problems)
            continue
        weight, on_error = entry.get("weight", 1.0), entry.get("on_error", "none")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            problems.append(f"{where} ({name}): 'weight' must be a finite number, got {weight!r}")
        if on_error not in ON_ERROR:
            problems.append(f"{where} ({name}): 'on_error' must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        time_limit = entry.get("time_limit")
        if time_limit is not None and not _positive_number(time_limit):
            problems.append(
                f"{where} ({name}): 'time_limit' must be a positive number of seconds for one call over a batch, "
                f"got {time_limit!r}"
            )
        params = {k: v for k, v in entry.items() if k not in RESERVED_KEYS}
        allowed = info.params
        for key, value in params.items():
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                known = ", ".join(allowed) or "none"
                problems.append(f"{where} ({name}): unknown parameter {key!r}.{hint} Its parameters: {known}")
            elif not _same_kind(value, allowed[key]):
                problems.append(f"{where} ({name}): {key!r} must be like its default {allowed[key]!r}, got {value!r}")
        problems.extend(declared_problems(f"{where} ({name})", info.func, entry, allowed))
        specs.append(RewardSpec(name=name, weight=weight, on_error=on_error, time_limit=time_limit, params=params))
    names = [s.name for s in specs]
    for name, n in Counter(names).items():
        if n > 1:
            problems.append(f"reward {name!r} is listed {n} times: its metrics would collide")
    if problems:
        raise RewardSpecError(problems)
    return specs


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _same_kind(value: Any, default: Any) -> bool:
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


class ScoredReward:
    """What TRL calls: the reward with its recipe parameters bound, its `time_limit` and `on_error` applied and
    failures counted.

    `stats` accumulates per reward since the last `pop_stats()`, in completions: seen, None values, errors (raised,
    wrong shape, NaN or infinite values), timeouts (the verifier's per-item limit, or the call's `time_limit`).
    """

    def __init__(self, spec: RewardSpec):
        self.spec = spec
        self.func = load_reward(spec.name).func
        self.__name__ = spec.name  # TRL names the reward's metrics after this
        limit = spec.time_limit if spec.time_limit is not None else default_time_limit(self.func)
        self.call_bounded = TimeLimitedCaller(spec.name, limit)
        self.stats: Counter = Counter()

    def __call__(self, completions, **columns) -> list[float | None]:
        n = len(completions)
        with collecting() as events:
            try:
                values = self.call_bounded(lambda: self.func(completions, **columns, **self.spec.params))
                values = _check_values(self.spec.name, values, n)
            except BaseException as e:  # sys.exit() in a reward too: a failure like any other, not the run's end
                if isinstance(e, KeyboardInterrupt) and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    raise  # Ctrl-C outside training (training's SIGINT handler stops at the step's end instead)
                if self.spec.on_error == "raise":
                    if isinstance(e, Exception):
                        raise
                    raise RuntimeError(f"reward {self.spec.name!r} raised {type(e).__name__}({e})") from e
                timed_out = isinstance(e, RewardTimeout)
                logger.warning("reward %r failed on %d completions: %s: %s", self.spec.name, n, type(e).__name__, e)
                events["timeouts" if timed_out else "errors"] += n
                values = [None if self.spec.on_error == "none" else 0.0] * n
        if self.spec.on_error == "zero":
            values = [0.0 if v is None else v for v in values]
        self.stats.update(events)
        self.stats["completions"] += n
        self.stats["none"] += sum(v is None for v in values)
        return values

    def pop_stats(self) -> dict[str, float]:
        s, self.stats = self.stats, Counter()
        total = max(1, s["completions"])
        prefix = f"rewards/{self.spec.name}"
        return {
            f"{prefix}/errors": s["errors"],
            f"{prefix}/timeouts": s["timeouts"],
            f"{prefix}/none_frac": s["none"] / total,
        }


def _check_values(name: str, values, n: int) -> list[float | None]:
    """The reward's values as floats or None; NaN and infinities become None and count as errors."""
    if getattr(values, "ndim", None) == 1 and hasattr(values, "tolist"):  # a numpy array or torch tensor
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise TypeError(f"reward {name!r} must return a list of {n} values, got {got}")
    out = []
    for v in values:
        try:
            out.append(as_score(v))
        except TypeError as e:  # the whole call is an error, counted once per completion by the caller
            raise TypeError(f"reward {name!r} returned {e}: values must be real numbers or None") from None
    note("errors", sum(score is None and v is not None for score, v in zip(out, values)))
    return out


def build_rewards(specs: list[RewardSpec]) -> tuple[list, list[float]]:
    """What `GRPOTrainer(reward_funcs=...)` runs, and the weights for `GRPOConfig.reward_weights`: a `ScoredReward`
    per reward, or for a reward TRL runs itself (hooks.runs_in_trainer, e.g. a reward model) what its builder makes,
    named after the reward. First each reward's start-up check (hooks.checks_at_start): `RecipeError` listing all."""
    problems = []
    for spec in specs:
        info = load_reward(spec.name)
        check = start_check(info.func)
        if check is not None:
            problems += [f"reward {spec.name!r}: {p}" for p in check(info.with_defaults(spec.params))]
    if problems:
        raise RecipeError(problems, "rewards")
    return [_build(spec) for spec in specs], [float(s.weight) for s in specs]


def _build(spec: RewardSpec):
    info = load_reward(spec.name)
    build = trainer_builder(info.func)
    if build is None:
        return ScoredReward(spec)
    reward = build(info.with_defaults(spec.params))
    reward.__name__ = spec.name  # the trainer names the reward's metrics after this (TRL would use the model's path)
    return reward
