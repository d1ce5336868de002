"""Train in this process: `open-grpo train RECIPE [--key value ...]` (any recipe key as an override).

For several GPUs, start it under a launcher: `make train RECIPE=... NUM_GPUS=n` or
`accelerate launch --config_file accelerate_configs/zero3.yaml -m open_grpo.train --config RECIPE`.
"""

from open_grpo.errors import EXIT_OK

NAME = "train"
HELP = "train in this process"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="a recipe name (open-grpo recipes) or a path to a recipe YAML")


def run(args, overrides: list[str]) -> int:
    from open_grpo.train import main

    main(args.recipe, overrides)
    return EXIT_OK
