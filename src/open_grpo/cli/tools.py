"""Every standalone tool registered through the `open_grpo.tools` entry points: source, recipe parameters,
description. (An environment's tools are listed by `open-grpo environments`.)"""

from open_grpo.cli.environments import print_plugins
from open_grpo.errors import EXIT_OK, UsageError

NAME = "tools"
HELP = "list registered standalone tools"


def add_arguments(p) -> None:
    pass


def run(args, rest: list[str]) -> int:
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    print_plugins("tool")
    return EXIT_OK
