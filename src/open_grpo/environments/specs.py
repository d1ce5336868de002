"""The recipe keys `environment`, `tools` and TRL's `max_tool_calling_iterations`, checked; and what TRL cannot run
safely with tools, refused before any model loads.

    environment: {name: python_exec, wall_s: 5}          # one environment for every row
    environment:                                         # or one per value of the dataset's `environment` column
      calc: {name: python_exec}
      chat: {name: my_env, level: 2}
    tools: [calculator, {name: my_tool, param: 1}]       # standalone tools, offered beside the environment's
    max_tool_calling_iterations: 4                       # TRL's: tool rounds per completion (null: until the budget)

Refused (TRL's tool loop generates again only for the completions that called a tool, so ranks run it a different
number of times, and a collective inside it waits forever for ranks that left the loop; for TP, TRL issue #5382):
vLLM tensor parallelism > 1 (each turn gathers the prompts of the TP group), vLLM server mode on several processes
(each turn gathers every rank's prompts), transformers generation (`use_vllm: false`) or vLLM sleep mode on several
processes with ZeRO-3 or FSDP (each turn gathers the sharded weights).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from open_grpo.environments.registry import Plugin, ToolSpecError, load
from open_grpo.errors import did_you_mean

ISSUE = "TRL issue #5382"


@dataclass
class PluginSpec:
    plugin: Plugin
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolSetup:
    """What a recipe asks for: environments by route (key None: one environment for every row) and standalone tools."""

    environments: dict[str | None, PluginSpec] = field(default_factory=dict)
    tools: list[PluginSpec] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.environments or self.tools)

    @property
    def routed(self) -> bool:
        return bool(self.environments) and None not in self.environments

    def tool_names(self) -> list[str]:
        """Every tool name the model may call, across routes."""
        names = [s.plugin.name for s in self.tools]
        names += [n for s in self.environments.values() for n in s.plugin.tool_names]
        return sorted(set(names))


def parse_tool_setup(environment, tools) -> ToolSetup:
    """The recipe's `environment` and `tools` -> `ToolSetup`. Raises `ToolSpecError` listing every problem."""
    problems: list[str] = []
    setup = ToolSetup()
    if isinstance(environment, str) or (isinstance(environment, dict) and "name" in environment):
        entries = {None: environment}
    elif isinstance(environment, dict):
        entries = environment
    elif environment is None:
        entries = {}
    else:
        entries = {}
        problems.append(f"'environment' must be a name, {{name: ..., <parameter>: ...}} or a mapping of routes, got "
                        f"{environment!r}")  # fmt: skip
    for route, entry in entries.items():
        where = "environment" if route is None else f"environment[{route!r}]"
        spec = _plugin_spec("environment", entry, where, problems)
        if spec is not None:
            setup.environments[route] = spec
    if tools is not None and not isinstance(tools, list):
        problems.append(f"'tools' must be a list of names or {{name: ..., <parameter>: ...}}, got {tools!r}")
        tools = []
    for i, entry in enumerate(tools or []):
        spec = _plugin_spec("tool", entry, f"tools[{i}]", problems)
        if spec is not None:
            setup.tools.append(spec)
    problems += _name_clashes(setup)
    if problems:
        raise ToolSpecError(problems)
    return setup


def _plugin_spec(kind: str, entry, where: str, problems: list[str]) -> PluginSpec | None:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        problems.append(f"{where} must be a name or a mapping with a 'name', got {entry!r}")
        return None
    try:
        plugin = load(kind, entry["name"])
    except ToolSpecError as e:
        problems.extend(f"{where}: {p}" for p in e.problems)
        return None
    params = {k: v for k, v in entry.items() if k != "name"}
    allowed = plugin.params
    for key, value in params.items():
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            problems.append(f"{where} ({plugin.name}): unknown parameter {key!r}.{hint} "
                            f"Its parameters: {', '.join(allowed) or 'none'}")  # fmt: skip
        elif not _same_kind(value, allowed[key]):
            problems.append(
                f"{where} ({plugin.name}): {key!r} must be like its default {allowed[key]!r}, got {value!r}"
            )
    return PluginSpec(plugin, params)


def _same_kind(value: Any, default: Any) -> bool:
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _name_clashes(setup: ToolSetup) -> list[str]:
    """A tool name twice in what one rollout sees: TRL would call one of them and show the model both schemas."""
    problems = []
    standalone = [s.plugin.name for s in setup.tools]
    for name in sorted({n for n in standalone if standalone.count(n) > 1}):
        problems.append(f"tool {name!r} is listed {standalone.count(name)} times in 'tools'")
    for route, spec in setup.environments.items():
        for name in sorted(set(spec.plugin.tool_names) & set(standalone)):
            where = "environment" if route is None else f"environment[{route!r}]"
            problems.append(f"tool {name!r} is both in 'tools' and a method of {where} ({spec.plugin.name}): "
                            "drop it from 'tools'")  # fmt: skip
    return problems


def recipe_problems(script, training) -> list[str]:
    """The recipe's tool keys and the layout refusals that need no world size (config.validate calls this)."""
    try:
        setup = parse_tool_setup(script.environment, script.tools)
    except ToolSpecError as e:
        return e.problems
    iterations = training.max_tool_calling_iterations
    if not setup.enabled:
        if iterations is not None:
            return ["'max_tool_calling_iterations' is set but the recipe has no 'environment' or 'tools'"]
        return []
    problems = []
    if iterations is not None and iterations < 1:
        problems.append(f"'max_tool_calling_iterations' must be at least 1 (or null: no limit), got {iterations}")
    return problems + layout_problems(training)


def layout_problems(training, world_size: int | None = None, shards_weights: bool = False) -> list[str]:
    """What TRL's tool loop cannot run without hanging (module docstring). `world_size` None: the checks that hold
    for any world size only; `shards_weights`: ZeRO-3 or FSDP."""
    colocated = training.use_vllm and training.vllm_mode == "colocate"
    tp = training.vllm_tensor_parallel_size
    if colocated and tp > 1:
        return [f"tools with 'vllm_tensor_parallel_size: {tp}' can hang ({ISSUE}): each tool round gathers the "
                "prompts of the TP group, and ranks run a different number of rounds; use "
                "'vllm_tensor_parallel_size: 1' (a model that needs TP cannot train with tools yet)"]  # fmt: skip
    if world_size is None or world_size < 2:
        return []
    if training.use_vllm and training.vllm_mode == "server":
        return [f"tools with 'vllm_mode: server' on {world_size} processes can hang: each tool round gathers "
                "every rank's prompts, and ranks run a different number of rounds; use "
                "'vllm_mode: colocate'"]  # fmt: skip
    if shards_weights and not training.use_vllm:
        return [f"tools with 'use_vllm: false' under ZeRO-3 or FSDP on {world_size} processes can hang: "
                "each tool round gathers the sharded weights to generate; use 'use_vllm: true' (colocate) or "
                "ZeRO-2 / DDP"]  # fmt: skip
    if shards_weights and colocated and training.vllm_enable_sleep_mode:
        return [f"tools with 'vllm_enable_sleep_mode: true' under ZeRO-3 or FSDP on {world_size} processes can hang: "
                "each tool round wakes the engine and gathers the sharded weights again; set "
                "'vllm_enable_sleep_mode: false' or use ZeRO-2"]  # fmt: skip
    return []
