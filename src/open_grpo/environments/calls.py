"""The tool callables TRL gets: the plugin's function under its registered name, its recipe parameters bound and
hidden from the model's schema, every call counted (`ToolStats`) for the metrics.

TRL builds each tool's JSON schema from the callable (`transformers.utils.get_json_schema`: name, docstring, type
hints), calls it with the model's arguments as keywords, and turns an exception into `{"error": ...}` for the model.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import Counter
from collections.abc import Callable

from open_grpo.environments import ToolError


def model_facing(func: Callable, name: str, params: dict, stats: ToolStats | None = None) -> Callable:
    """`func` as TRL calls it: named `name`, `params` (recipe parameters) bound, its signature and annotations
    without them (the schema shows the model only its own arguments); each call recorded in `stats`."""
    signature = inspect.signature(func)
    hidden = [p for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
    visible = [p for p in signature.parameters.values() if p.kind is not p.KEYWORD_ONLY]
    bound = dict(params)

    def record(result):
        if stats is not None:
            stats.record(name, failed=isinstance(result, ToolError))
        return result

    def fail():
        if stats is not None:
            stats.record(name, failed=True)

    if inspect.iscoroutinefunction(func):

        async def call(**arguments):
            try:
                result = await func(**arguments, **bound)
            except Exception:
                fail()
                raise
            return record(result)
    else:

        def call(**arguments):
            try:
                result = func(**arguments, **bound)
            except Exception:
                fail()
                raise
            return record(result)

    functools.update_wrapper(call, func, assigned=("__module__", "__doc__"), updated=())
    call.__name__ = call.__qualname__ = name
    call.__signature__ = signature.replace(parameters=visible)
    drop = {p.name for p in hidden}
    call.__annotations__ = {k: v for k, v in inspect.get_annotations(func, eval_str=True).items() if k not in drop}
    return call


class ToolStats:
    """Calls and failures per tool, and completions generated, since the last `pop_metrics` (one per process)."""

    def __init__(self, names: list[str]):
        self.names = sorted(set(names))
        self._calls: Counter = Counter()
        self._failures: Counter = Counter()
        self._completions = 0
        self._lock = threading.Lock()  # async tools run on TRL's event-loop thread

    def record(self, name: str, failed: bool) -> None:
        with self._lock:
            self._calls[name] += 1
            self._failures[name] += int(failed)

    def count_completions(self, n: int) -> None:
        with self._lock:
            self._completions += n

    def pop_metrics(self, accelerator=None) -> dict[str, float]:
        """`tools/calls_per_completion`, `tools/failure_rate` and both per tool, summed over every rank (a collective:
        every rank calls it at the same point). Empty when no completion was generated since the last call."""
        with self._lock:
            values = [self._completions] + [c[n] for n in self.names for c in (self._calls, self._failures)]
            self._calls, self._failures, self._completions = Counter(), Counter(), 0
        if accelerator is not None and accelerator.num_processes > 1:
            import torch

            summed = accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=accelerator.device), "sum")
            values = summed.tolist()
        completions, per_tool = values[0], values[1:]
        if not completions:
            return {}
        calls, failures = per_tool[0::2], per_tool[1::2]
        metrics = {
            "tools/calls_per_completion": sum(calls) / completions,
            "tools/failure_rate": sum(failures) / sum(calls) if sum(calls) else 0.0,
        }
        for name, n, failed in zip(self.names, calls, failures):
            metrics[f"tools/{name}/calls_per_completion"] = n / completions
            metrics[f"tools/{name}/failure_rate"] = failed / n if n else 0.0
        return metrics
