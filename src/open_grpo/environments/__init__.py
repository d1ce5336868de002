"""Tools and environments for multi-turn, tool-using rollouts, on TRL's own hooks (`GRPOTrainer(tools=...,
environment_factory=...)`, `max_tool_calling_iterations`, the `tool_mask` that keeps tool output out of the loss).

Two entry-point groups, discovered and checked like rewards: `open_grpo.environments` (classes: per-rollout state,
`reset(**row)`, public methods are the tools) and `open_grpo.tools` (plain functions). registry.py finds and checks
them, specs.py reads the recipe keys and refuses what TRL cannot do safely, setup.py builds TRL's arguments at
start-up, stats.py counts calls and failures per tool, transcript.py reads the calls back from a completion.
Built-ins: the `python_exec` environment (python_exec.py, over open_grpo.sandbox) and the `calculator` tool.

A tool reports a failed call by raising, or by returning `ToolError(text)`: the model reads the text, and the call
counts in `tools/<name>/failure_rate`.
"""

from __future__ import annotations


class ToolError(str):
    """A tool's result for a call that failed (a program that raised, a bad expression): the model reads the text as
    any other result; the call counts as failed in the metrics."""


__all__ = ["ToolError"]
