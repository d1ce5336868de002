"""The `open-grpo` command.

open-grpo train RECIPE [--key value ...]   train in this process (RECIPE: a name under recipes/ or a path)
open-grpo check RECIPE [--gpus-per-node N] [--nodes M] [--gpu-mem-gib G] [--accelerate NAME]
                                          preflight: process layout, batch arithmetic, memory plan (no GPU)
open-grpo rewards                          every registered reward: source, parameters, description
open-grpo recipes                          the recipes found
"""

from __future__ import annotations

import argparse
import sys

from .config import RecipeError, available_recipes


def _train(args, rest: list[str]) -> int:
    from .train import main

    main(args.recipe, rest)
    return 0


def _rewards(args, rest: list[str]) -> int:
    from .rewards.registry import RewardSpecError, load_reward, reward_names

    for name in reward_names():
        try:
            info = load_reward(name)
        except RewardSpecError as e:
            print(f"{name}\n    ERROR: {e}")
            continue
        params = ", ".join(f"{k}={v!r}" for k, v in info.params.items()) or "-"
        print(f"{name}  [{info.distribution}: {info.target}]\n    {info.doc}\n    parameters: {params}")
    return 0


def _recipes(args, rest: list[str]) -> int:
    print("\n".join(available_recipes()))
    return 0


def _check(args, rest: list[str]) -> int:
    from .preflight import check_command

    return check_command(args, rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser, documented in bench.py
        from .bench import main as bench

        return bench(argv[1:])
    if argv[:1] == ["launch-args"]:  # for job scripts, documented in launch.py
        from .launch import main as launch_args

        return launch_args(argv[1:])
    parser = argparse.ArgumentParser(
        prog="open-grpo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train in this process")
    p.add_argument("recipe")
    p.set_defaults(run=_train)
    p = sub.add_parser("check", help="preflight checks, offline and without a GPU")
    p.add_argument("recipe")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpu-mem-gib", type=float, default=80.0)
    p.add_argument("--accelerate", default="zero3", help="accelerate config name under accelerate_configs/")
    p.set_defaults(run=_check)
    sub.add_parser("rewards", help="list registered rewards").set_defaults(run=_rewards)
    sub.add_parser("recipes", help="list recipes").set_defaults(run=_recipes)

    args, rest = parser.parse_known_args(argv)
    try:
        return args.run(args, rest)
    except RecipeError as e:
        print(f"open-grpo: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
