"""The recipes found: ./recipes, $OPEN_GRPO_RECIPES and the ones shipped with the package."""

NAME = "recipes"
HELP = "list recipes"


def add_arguments(p) -> None:
    pass


def run(args, rest: list[str]) -> int:
    from ..config import available_recipes

    print("\n".join(available_recipes()))
    return 0
