"""What one reward call may do: run past its wall-clock limit (`time_limit`), or return values that are not numbers.

A reward is third-party code called inside every training step. One that never returns must not hang the run, and
one that returns NaN or infinity must not silently zero the loss: a call past its `time_limit` is abandoned (it keeps
running in a daemon thread, which never holds up the process's exit) and its batch scores as the reward's
`on_error` says; a non-finite value is "cannot score" (None) and counted as an error.
"""

from __future__ import annotations

import contextvars
import logging
import math
import numbers
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# A generous bound for one call over a batch: a plugin that needs more sets its own `time_limit`.
DEFAULT_TIME_LIMIT_S = 300.0
# Abandoned calls of one reward still running at once; past this no new thread starts and the call times out at
# once, so a reward that hangs on every call cannot pile up a thread (and its batch) per training step.
MAX_ABANDONED_CALLS = 4
# TRL holds rewards in float32 tensors: a larger value (1e308) would become infinity there.
FLOAT32_MAX = 3.4028234663852886e38


class RewardTimeout(TimeoutError):
    pass


def bounds_itself(func: Callable) -> Callable:
    """Mark a reward that bounds its own work (as `accuracy`, with a wall-clock limit per completion): it gets no
    default `time_limit`, since a large batch may rightly take longer than any fixed bound; a recipe can set one."""
    func.bounds_itself = True
    return func


def default_time_limit(func: Callable) -> float | None:
    return None if getattr(func, "bounds_itself", False) else DEFAULT_TIME_LIMIT_S


class TimeLimitedCaller:
    """Calls one reward with a wall-clock limit, keeping track of its abandoned calls."""

    def __init__(self, name: str, limit: float | None):
        self.name = name
        self.limit = limit
        self._abandoned: list[threading.Thread] = []

    def __call__(self, func: Callable[[], Any]) -> Any:
        """`func()`, or `RewardTimeout` once it has run `limit` seconds (it is left running in a daemon thread)."""
        if self.limit is None:
            return func()
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if len(self._abandoned) >= MAX_ABANDONED_CALLS:
            raise RewardTimeout(
                f"reward {self.name!r}: {len(self._abandoned)} earlier calls past time_limit={self.limit:g}s are "
                "still running; not starting another"
            )
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["value"] = func()
            except BaseException as e:  # handed to the caller, which applies on_error
                result["error"] = e

        context = contextvars.copy_context()  # the reward's event counters (events.note) reach this call's counter
        thread = threading.Thread(target=context.run, args=(run,), name=f"reward-{self.name}", daemon=True)
        thread.start()
        thread.join(self.limit)
        if thread.is_alive():
            self._abandoned.append(thread)
            raise RewardTimeout(f"reward {self.name!r} did not return within time_limit={self.limit:g}s")
        if "error" in result:
            raise result["error"]
        return result["value"]


def as_score(value: Any) -> float | None:
    """A reward's value as a float, or None for "cannot score" (None, NaN, +-inf, beyond float32's range, where TRL
    would see infinity). Raises TypeError for anything that is not a real number.

    Any real number counts: Python ints and floats, numpy scalars, 0-d numpy arrays and torch tensors.
    """
    if value is None:
        return None
    if not isinstance(value, numbers.Real) and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a 0-d numpy array or torch tensor
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{value!r} ({type(value).__name__}) is not a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        return None
    return number if math.isfinite(number) and abs(number) <= FLOAT32_MAX else None


def drop_nonfinite_sums(rewards_per_func, weights, reward_funcs, process_index: int = 0, num_processes: int = 1):
    """Mark completions whose weighted reward sum is not finite as unscorable (all NaN), counting an error for each.

    TRL sums `rewards_per_func * weights` in float32 per completion (`GRPOTrainer._generate_and_score_completions`):
    finite values can still overflow there (two rewards of 3e38), and an infinite sum would zero the group's
    advantages. Such a row becomes NaN, which TRL treats as "every reward returned None" (no advantage, left out of
    the group baseline). The error is counted against the reward with the largest weighted term, for this process's
    rows of the gathered tensor only, as every reward counts only its own calls.
    """
    import torch

    weighted = rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)
    scored = ~torch.isnan(rewards_per_func).all(dim=1)
    bad = scored & ~torch.isfinite(weighted.nansum(dim=1))
    if not bad.any():
        return rewards_per_func
    rows = len(bad) // num_processes  # gathered: each process's rows, in process order
    local = slice(process_index * rows, (process_index + 1) * rows)
    local_bad = torch.zeros_like(bad)
    local_bad[local] = bad[local]
    logger.warning("%d completions have a non-finite weighted reward sum: scored as None", int(bad.sum()))
    culprits = weighted[local_bad].abs().nan_to_num(nan=-1.0).argmax(dim=1)
    for index in culprits.tolist():
        stats = getattr(reward_funcs[index], "stats", None)  # a ScoredReward; TRL's own reward types keep none
        if stats is not None:
            stats["errors"] += 1
    rewards_per_func = rewards_per_func.clone()
    rewards_per_func[bad] = torch.nan
    return rewards_per_func
