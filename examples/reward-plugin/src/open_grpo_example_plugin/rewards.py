"""An example open_grpo reward plugin: `pip install examples/reward-plugin`, then `rewards: [{name: short_answer}]`."""

from open_grpo.rewards import completion_text


def short_answer(completions, *, target_chars: int = 40, **columns) -> list[float | None]:
    """1.0 for a completion of at most `target_chars` characters, falling linearly to 0.0 at twice that."""
    rewards = []
    for completion in completions:
        over = max(0, len(completion_text(completion)) - target_chars)
        rewards.append(max(0.0, 1.0 - over / target_chars))
    return rewards
