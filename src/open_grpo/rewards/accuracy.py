"""`accuracy`: 1.0 when the completion's final answer equals the gold answer (math-verify), else 0.0.

The answer is the last `<answer>...</answer>` if there is one, else the first `\\boxed{}` (or LaTeX) answer of the
text. None when the gold answer cannot be parsed, or verification fails or passes its wall-clock limit.
"""

from __future__ import annotations

from open_grpo.rewards.events import note
from open_grpo.rewards.limits import bounds_itself
from open_grpo.rewards.text import answer_text, completion_text
from open_grpo.rewards.verifier import get_pool


def check_answers(completions, solution, timeout: float) -> list[float | None]:
    """1.0 / 0.0 per completion, None where it cannot be scored. Shared by the rewards that need correctness."""
    if solution is None:
        return [None] * len(completions)
    items = []
    for completion, gold in zip(completions, solution):
        text, tagged = answer_text(completion_text(completion))
        items.append((gold if isinstance(gold, str) else str(gold), text, tagged))
    outcomes = get_pool().score(items, timeout)
    note("timeouts", sum(o.status == "timeout" for o in outcomes))
    note("errors", sum(o.status == "error" for o in outcomes))
    return [o.value for o in outcomes]


@bounds_itself  # the verifier bounds each completion: no default time_limit for the call
def accuracy(completions, *, timeout: float = 5.0, **columns) -> list[float | None]:
    """Math answer correctness via math-verify, from `<answer>` or `\\boxed{}`; None if the gold is unparseable."""
    return check_answers(completions, columns.get("solution"), timeout)
