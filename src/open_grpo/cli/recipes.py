"""The recipes found: ./recipes, $OPEN_GRPO_RECIPES and the ones shipped with the package."""

from open_grpo.errors import EXIT_OK, UsageError

NAME = "recipes"
HELP = "list recipes"


def add_arguments(p) -> None:
    pass


def run(args, rest: list[str]) -> int:
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    from open_grpo.recipe import available_recipes

    print("\n".join(available_recipes()))
    return EXIT_OK
