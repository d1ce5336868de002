"""Every environment registered through the `open_grpo.environments` entry points: source, recipe parameters, the
tools it offers the model, description."""

from open_grpo.errors import EXIT_OK, UsageError

NAME = "environments"
HELP = "list registered environments (tool-using rollouts)"


def add_arguments(p) -> None:
    pass


def run(args, rest: list[str]) -> int:
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    print_plugins("environment")
    return EXIT_OK


def print_plugins(kind: str) -> None:
    """One block per registered environment or tool; a plugin that fails to load shows why."""
    from open_grpo.environments.registry import ToolSpecError, load, names

    for name in names(kind):
        try:
            plugin = load(kind, name)
        except ToolSpecError as e:
            print(f"{name}\n    ERROR: {e}")
            continue
        params = ", ".join(f"{k}={v!r}" for k, v in plugin.params.items()) or "-"
        tools = f"\n    tools: {', '.join(plugin.tool_names)}" if kind == "environment" else ""
        print(f"{name}  [{plugin.distribution}: {plugin.target}]\n    {plugin.doc}\n    parameters: {params}{tools}")
