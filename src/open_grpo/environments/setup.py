"""TRL's tool arguments at start-up: `GRPOTrainer(tools=..., environment_factory=...)` from the recipe, after the
checks that need this launch's world size, its tokenizer and its data (train.py calls `trainer_tool_kwargs`)."""

from __future__ import annotations

import logging
import os

from open_grpo.environments.calls import ToolStats, model_facing
from open_grpo.environments.chat_template import offline_tokenizer, template_problems
from open_grpo.environments.specs import PluginSpec, ToolSetup, layout_problems, parse_tool_setup
from open_grpo.errors import RecipeError
from open_grpo.runs.layout import current_layout

logger = logging.getLogger(__name__)

ROUTE_COLUMN = "environment"  # TRL's: the dataset column that picks a row's environment


class EnvironmentFactory:
    """What TRL calls (with no arguments) for each environment instance: the plugin class with the recipe's
    parameters, its tool methods counted in `stats`."""

    def __init__(self, spec: PluginSpec, stats: ToolStats):
        self.spec, self.stats = spec, stats

    def __call__(self):
        environment = self.spec.plugin.obj(**self.spec.params)
        for name in self.spec.plugin.tool_names:  # an instance attribute: what TRL's getattr finds first
            setattr(environment, name, model_facing(getattr(environment, name), name, {}, self.stats))
        return environment


def trainer_tool_kwargs(script, training, tokenizer, model: str, datasets) -> dict:
    """`tools`, `environment_factory` (GRPOTrainer) and `tool_stats` (OpenGRPOTrainer), or {} for a recipe without
    tools. Raises `RecipeError` for what cannot run: a layout TRL's tool loop hangs on, a chat template without tool
    support, rows routed to no environment. May raise `vllm_max_model_length` by the tool schemas' tokens."""
    setup = parse_tool_setup(script.environment, script.tools)  # checked with the recipe already
    if not setup.enabled:
        return {}
    layout = current_layout(training)
    fsdp = bool(training.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    problems = layout_problems(training, layout.world_size, shards_weights=layout.zero_stage == 3 or fsdp)
    problems += template_problems(tokenizer, model)
    for dataset in datasets:
        problems += routing_problems(setup, dataset)
    if problems:
        raise RecipeError(problems, "tools")

    stats = ToolStats(setup.tool_names())
    tools = [model_facing(s.plugin.obj, s.plugin.name, s.params, stats) for s in setup.tools]
    factories = {route: EnvironmentFactory(spec, stats) for route, spec in setup.environments.items()}
    problems += build_problems(factories)  # one built now: a plugin that cannot start fails before the model
    if problems:
        raise RecipeError(problems, "tools")
    _fit_engine_length(training, training.max_prompt_tokens, tokenizer, datasets[0], tools, setup)
    if training.process_index == 0:
        envs = ", ".join(
            s.plugin.name if r is None else f"{r}: {s.plugin.name}" for r, s in setup.environments.items()
        )
        logger.info("tools: %s; environment: %s; at most %s tool rounds per completion",
                    ", ".join(setup.tool_names()), envs or "none",
                    training.max_tool_calling_iterations or "unlimited")  # fmt: skip
    factory = (factories if setup.routed else factories[None]) if factories else None
    return {"tools": tools or None, "environment_factory": factory, "tool_stats": stats}


def check_tools(recipe, world_size: int, zero_stage: int, accelerate: str) -> list[str]:
    """`open-grpo check`'s part: raises `RecipeError` for a layout TRL's tool loop hangs on or a chat template
    without tool support; returns warnings (the template could not be checked offline)."""
    setup = parse_tool_setup(recipe.script.environment, recipe.script.tools)
    if not setup.enabled:
        return []
    shards = zero_stage == 3 or "fsdp" in accelerate
    problems = layout_problems(recipe.training, world_size, shards_weights=shards)
    model = recipe.model.model_name_or_path
    tokenizer = offline_tokenizer(model, recipe.model.model_revision)
    if tokenizer is not None:
        problems += template_problems(tokenizer, model)
    stats = ToolStats(setup.tool_names())  # each environment built once, as at start-up (python_exec: its sandbox)
    problems += build_problems({route: EnvironmentFactory(spec, stats) for route, spec in setup.environments.items()})
    if problems:
        raise RecipeError(problems, "tools")
    if tokenizer is None:
        return [f"the chat template of {model!r} was not checked for tool support (its tokenizer is not on this "
                "machine); the trainer checks it at start-up"]  # fmt: skip
    return []


def build_problems(factories: dict) -> list[str]:
    """Build each environment once: what cannot start (bad parameters, a sandbox whose isolation does not hold
    here) is reported with the recipe's other problems, before any model loads."""
    problems = []
    for route, factory in factories.items():
        try:
            factory()
        except Exception as e:
            where = "environment" if route is None else f"environment[{route!r}]"
            params = factory.spec.params or "its defaults"
            problems.append(f"{where} ({factory.spec.plugin.name}) cannot be built with {params}: "
                            f"{type(e).__name__}: {e}")  # fmt: skip
    return problems


def routing_problems(setup: ToolSetup, dataset) -> list[str]:
    """With environments by route, every row must name one in its `environment` column (TRL checks a batch at a
    time, mid-run)."""
    if dataset is None or not setup.routed:
        return []
    routes = sorted(setup.environments)
    if ROUTE_COLUMN not in dataset.column_names:
        return [f"'environment' routes rows by their {ROUTE_COLUMN!r} column ({', '.join(routes)}), but the dataset "
                f"has none; its columns are {dataset.column_names}"]  # fmt: skip
    values = dataset[ROUTE_COLUMN]
    unknown = sorted({str(v) for v in values if v not in setup.environments})
    if not unknown:
        return []
    count = sum(v not in setup.environments for v in values)
    return [f"{count} of {len(values)} rows have an {ROUTE_COLUMN!r} value that names no route of 'environment' "
            f"({', '.join(unknown[:10])}); routes: {', '.join(routes)}"]  # fmt: skip


def _fit_engine_length(training, max_prompt_tokens, tokenizer, dataset, tools, setup: ToolSetup) -> None:
    """The tool schemas go into the prompt's system message: a vLLM context set from `max_prompt_tokens` (the prompt
    without them) grows by their tokens, the longest route's."""
    if not (training.use_vllm and training.vllm_max_model_length is None and max_prompt_tokens and len(dataset)):
        return
    prompt = dataset[0]["prompt"]

    def length(tool_list) -> int:
        ids = tokenizer.apply_chat_template(prompt, tools=tool_list or None, add_generation_prompt=True,
                                            tokenize=True, return_dict=False)  # fmt: skip
        return len(ids)

    routes = setup.environments.values() or [None]
    per_route = [tools + [getattr(s.plugin.obj, n) for n in s.plugin.tool_names] if s else tools for s in routes]
    overhead = max(length(t) for t in per_route) - length([])
    training.vllm_max_model_length = max_prompt_tokens + overhead + training.max_completion_length
    if training.process_index == 0:
        logger.info("vllm_max_model_length = %d (max_prompt_tokens + %d tokens of tool schemas + "
                    "max_completion_length)", training.vllm_max_model_length, overhead)  # fmt: skip
