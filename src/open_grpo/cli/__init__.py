"""The `open-grpo` command: one argparse tree, one module per subcommand, one exit-code policy.

    open-grpo train RECIPE [--key value ...]          train in this process (RECIPE: a name under recipes/ or a path)
    open-grpo check RECIPE [--gpus-per-node N] [--nodes M] [--gpu-mem-gib G] [--accelerate NAME] [--key value ...]
    open-grpo launch-args RECIPE --nodes M --gpus-per-node N [--tp T] ... [-- trainer overrides]
    open-grpo bench [--rows trl-default,open_grpo] [--out DIR]
    open-grpo rewards                                 every registered reward
    open-grpo environments                            every registered environment (tool-using rollouts)
    open-grpo tools                                   every registered standalone tool
    open-grpo recipes                                 the recipes found

Exit codes (errors.py): 0 done; 1 a check failed (the plan does not fit, a layout is refused); 2 a configuration,
data or usage error, every problem listed on stderr; 75 stopped for a requeue. `python -m open_grpo.cli ...` is the
same command.

Each subcommand imports what it runs (torch, TRL, vLLM) inside `run`: `open-grpo --help`, `recipes`, `rewards` and
`check` import no torch and answer in a second.
"""

from __future__ import annotations

import argparse
import sys

from open_grpo.cli import bench, check, environments, launch_args, recipes, rewards, tools, train
from open_grpo.errors import EXIT_CONFIG_ERROR, RecipeError

COMMANDS = (train, check, launch_args, bench, rewards, environments, tools, recipes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="open-grpo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    args.argv = argv  # as given, for commands that record how they were called
    if rest[:1] == ["--"]:
        rest = rest[1:]
    try:
        return args.run(args, rest)
    except RecipeError as e:
        print(f"open-grpo {args.command}: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
