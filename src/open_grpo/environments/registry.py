"""The registries of environments and tools: the entry-point groups `open_grpo.environments` (classes) and
`open_grpo.tools` (functions), checked when loaded.

    [project.entry-points."open_grpo.environments"]
    my_env = "my_pkg.envs:MyEnv"
    [project.entry-points."open_grpo.tools"]
    my_tool = "my_pkg.tools:my_tool"

An environment is a class: `__init__` takes only parameters with defaults (the recipe sets them), `reset(**row)`
starts a rollout (the dataset row as keywords; it may return text appended to the prompt), every public method is a
tool, an optional `get_reward()` scores the rollout (TRL's contract). A tool is a function whose positional
parameters are the model's arguments and whose keyword-only parameters (with defaults) the recipe sets. Every tool
needs type hints and a Google-style docstring with an `Args:` line per model argument: TRL builds the schema the model
reads from them. Problems (unknown name, a name from two distributions, a plugin that fails to import or breaks the
contract) are raised before any model loads.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from open_grpo.errors import did_you_mean

GROUPS = {"environment": "open_grpo.environments", "tool": "open_grpo.tools"}
TRL_METHODS = ("reset", "get_reward")  # an environment's methods that TRL calls itself, never offered as tools


class ToolSpecError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Plugin:
    kind: str  # "environment" or "tool"
    name: str
    obj: Callable  # the environment class or the tool function
    distribution: str
    target: str  # "module:attr"

    @property
    def params(self) -> dict[str, Any]:
        """What a recipe may set beside the name: an environment's `__init__` parameters, a tool's keyword-only ones."""
        if self.kind == "environment":
            sig = inspect.signature(self.obj.__init__)
            named = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            return {p.name: p.default for p in named[1:]}  # [0] is self
        sig = inspect.signature(self.obj)
        return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}

    @property
    def tool_names(self) -> list[str]:
        """The tools the model sees: an environment's public methods, or the tool under its registered name."""
        return public_methods(self.obj) if self.kind == "environment" else [self.name]

    @property
    def doc(self) -> str:
        return (inspect.getdoc(self.obj) or "").split("\n")[0]

    def describe(self) -> str:
        return f"{self.kind} {self.name!r} ({self.target}, distribution {self.distribution!r})"


def public_methods(cls: type) -> list[str]:
    """The methods TRL offers as tools: public functions of the class, but `reset` and `get_reward`."""
    return [
        n for n, _ in inspect.getmembers(cls, inspect.isfunction) if n not in TRL_METHODS and not n.startswith("_")
    ]


_entry_points: dict[str, dict[str, list[tuple[str, EntryPoint]]]] = {}
_loaded: dict[tuple[str, str], Plugin] = {}
_lock = threading.RLock()


def _discover(kind: str) -> dict[str, list[tuple[str, EntryPoint]]]:
    """name -> [(distribution, entry point)] for one group, one row per distinct distribution. Read once."""
    with _lock:
        if kind not in _entry_points:
            found: dict[str, dict[str, EntryPoint]] = {}
            for ep in entry_points(group=GROUPS[kind]):
                dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
                found.setdefault(ep.name, {})[dist] = ep  # the same distribution twice on sys.path counts once
            _entry_points[kind] = {name: sorted(by_dist.items()) for name, by_dist in found.items()}
        return _entry_points[kind]


def names(kind: str) -> list[str]:
    return sorted(_discover(kind))


def load(kind: str, name: str) -> Plugin:
    """The environment or tool registered under `name`, imported and checked on first use (`ToolSpecError`)."""
    with _lock:
        if (kind, name) in _loaded:
            return _loaded[kind, name]
        candidates = _discover(kind).get(name)
        if not candidates:
            known = names(kind)
            hint = did_you_mean(name, known)
            listing = ", ".join(known) or "none installed"
            raise ToolSpecError([f"Unknown {kind} {name!r}.{hint} Available: {listing} (`open-grpo {kind}s`)"])
        if len(candidates) > 1:
            dists = " and ".join(f"{d!r} ({ep.value})" for d, ep in candidates)
            raise ToolSpecError([f"{kind} {name!r} is registered by two distributions: {dists}; uninstall one"])
        dist, ep = candidates[0]
        try:
            obj = ep.load()
        except Exception as e:
            raise ToolSpecError(
                [
                    f"{kind} plugin {name!r} ({ep.value}, distribution {dist!r}) failed to import: {type(e).__name__}: {e}"
                ]
            ) from e
        plugin = Plugin(kind=kind, name=name, obj=obj, distribution=dist, target=ep.value)
        problems = contract_problems(plugin)
        if problems:
            raise ToolSpecError([f"{plugin.describe()}: {p}" for p in problems])
        _loaded[kind, name] = plugin
        return plugin


def contract_problems(plugin: Plugin) -> list[str]:
    """How a plugin breaks its contract (module docstring), one line each."""
    from open_grpo.environments.calls import model_facing

    obj = plugin.obj
    if plugin.kind == "environment":
        if not inspect.isclass(obj):
            return [f"must be a class, got {type(obj).__name__}"]
        problems = [] if callable(getattr(obj, "reset", None)) else ["has no reset(**row) method (TRL calls it)"]
        required = [k for k, v in plugin.params.items() if v is inspect.Parameter.empty]
        if required:
            problems.append(
                f"__init__ parameters {required} have no default: TRL builds environments with no arguments"
            )
        if not plugin.tool_names:
            problems.append("has no public method: an environment's public methods are its tools")
        tools = {n: getattr(obj, n) for n in plugin.tool_names}
    else:
        if inspect.isclass(obj) or not callable(obj):
            return [f"must be a function, got {type(obj).__name__}"]
        required = [k for k, v in plugin.params.items() if v is inspect.Parameter.empty]
        problems = [f"keyword-only parameters {required} need defaults (the recipe may set them)"] if required else []
        tools = {plugin.name: model_facing(obj, plugin.name, {})}
    return problems + [p for name, func in tools.items() for p in schema_problems(name, func)]


def schema_problems(name: str, func: Callable) -> list[str]:
    """Whether TRL can build the schema the model reads (transformers' get_json_schema: type hints, docstring)."""
    from transformers.utils import get_json_schema

    try:
        get_json_schema(func)
    except Exception as e:
        return [
            f"tool {name!r}: no schema for the model ({type(e).__name__}: {e}); give every argument a type hint and "
            "a Google-style docstring with an 'Args:' line for it"
        ]
    return []
