"""Per-call counters that a reward reports (timeouts, verifier errors) and the registry's wrapper logs."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[Counter | None] = ContextVar("open_grpo_reward_events", default=None)


def note(kind: str, count: int = 1) -> None:
    """Count an event ('timeouts', 'errors') against the reward being called, if any is being watched."""
    counter = _current.get()
    if counter is not None and count:
        counter[kind] += count


@contextmanager
def collecting():
    counter: Counter = Counter()
    token = _current.set(counter)
    try:
        yield counter
    finally:
        _current.reset(token)
