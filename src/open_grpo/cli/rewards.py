"""Every reward registered through the `open_grpo.rewards` entry points: source, parameters, description."""

from open_grpo.errors import EXIT_OK, UsageError

NAME = "rewards"
HELP = "list registered rewards"


def add_arguments(p) -> None:
    pass


def run(args, rest: list[str]) -> int:
    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    from inspect import Parameter

    from open_grpo.rewards.registry import RewardSpecError, load_reward, reward_names

    for name in reward_names():
        try:
            info = load_reward(name)
        except RewardSpecError as e:
            print(f"{name}\n    ERROR: {e}")
            continue
        params = ", ".join(k if v is Parameter.empty else f"{k}={_short(v)}" for k, v in info.params.items()) or "-"
        print(f"{name}  [{info.distribution}: {info.target}]\n    {info.doc}\n    parameters: {params}")
    return EXIT_OK


def _short(value, limit: int = 60) -> str:
    """A default's repr, cut where it is long (a judge's prompt template): the listing stays one line per reward."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(str(value))} chars)"
