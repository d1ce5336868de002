"""Format rewards: `format`, `tag_count`, `reasoning_steps` (semantics of open-r1's rewards.py)."""

from __future__ import annotations

import re

from open_grpo.rewards.text import completion_text

FORMAT = re.compile(r"\A\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*\Z", re.DOTALL)
STEPS = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)")


def format_reward(completions, **columns) -> list[float]:
    """1.0 for `<think>...</think>` then `<answer>...</answer>` and nothing else (newlines around tags optional)."""
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        tags_once = all(text.count(tag) == 1 for tag in ("<think>", "</think>", "<answer>", "</answer>"))
        ok = tags_once and FORMAT.match(text) is not None
        rewards.append(1.0 if ok else 0.0)
    return rewards


format_reward.__name__ = "format"


def tag_count(completions, **columns) -> list[float]:
    """0.25 for each of `<think>\\n`, `\\n</think>\\n`, `\\n<answer>\\n`, `\\n</answer>` appearing exactly once."""
    tags = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
    return [float(sum(0.25 for tag in tags if completion_text(c).count(tag) == 1)) for c in completions]


def reasoning_steps(completions, **columns) -> list[float]:
    """min(1, steps / 3), counting 'Step n:', numbered lines, bullets and First/Second/Next/Finally."""
    return [min(1.0, len(STEPS.findall(completion_text(c))) / 3) for c in completions]
