"""Length and repetition rewards: `length` (Kimi 1.5), `cosine`, `repetition_penalty`, `soft_overlong` (DAPO).

Semantics and defaults follow open-r1's rewards.py, with one deliberate difference: where correctness is needed and
the gold answer cannot be parsed, these return None ("cannot score") where open-r1 treats the answer as correct.
"""

from __future__ import annotations

import math

from open_grpo.rewards.accuracy import check_answers
from open_grpo.rewards.limits import bounds_itself
from open_grpo.rewards.text import completion_text


@bounds_itself  # the verifier bounds each completion: no default time_limit for the call
def length(completions, *, timeout: float = 5.0, **columns) -> list[float | None]:
    """Kimi 1.5: correct -> 0.5 - (len - min) / (max - min); wrong -> min(0, that). Lengths in characters."""
    correct = check_answers(completions, columns.get("solution"), timeout)
    lengths = [len(completion_text(c)) for c in completions]
    if not lengths or max(lengths) == min(lengths):
        return [None if ok is None else 0.0 for ok in correct]
    low, high = min(lengths), max(lengths)
    rewards = []
    for n, ok in zip(lengths, correct):
        lam = 0.5 - (n - low) / (high - low)
        rewards.append(None if ok is None else (lam if ok else min(0.0, lam)))
    return rewards


@bounds_itself  # the verifier bounds each completion: no default time_limit for the call
def cosine(
    completions,
    *,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_len: int = 1000,
    timeout: float = 5.0,
    **columns,
) -> list[float | None]:
    """Cosine-scaled by length (characters): short correct answers earn most, long wrong ones lose least."""
    correct = check_answers(completions, columns.get("solution"), timeout)
    rewards = []
    for completion, ok in zip(completions, correct):
        if ok is None:
            rewards.append(None)
            continue
        cos = math.cos(min(len(completion_text(completion)) / max_len, 1.0) * math.pi)
        low, high = (min_value_correct, max_value_correct) if ok else (max_value_wrong, min_value_wrong)
        rewards.append(low + 0.5 * (high - low) * (1.0 + cos))
    return rewards


def repetition_penalty(completions, *, ngram_size: int = 3, max_penalty: float = -1.0, **columns) -> list[float]:
    """(1 - distinct n-grams / n-grams) * max_penalty over lower-cased words (arXiv:2502.03373, App. C.2)."""
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    rewards = []
    for completion in completions:
        words = completion_text(completion).lower().split()
        if len(words) < ngram_size:
            rewards.append(0.0)
            continue
        ngrams = list(zip(*[words[i:] for i in range(ngram_size)]))
        rewards.append((1 - len(set(ngrams)) / len(ngrams)) * max_penalty)
    return rewards


def soft_overlong(
    completions, *, max_completion_len: int = 16384, soft_punish_cache: int = 4096, **columns
) -> list[float | None]:
    """DAPO: 0 up to max - cache tokens, then a linear penalty to -1 at max, -1 beyond. None without token ids."""
    completion_ids = columns.get("completion_ids")
    if completion_ids is None:
        return [None] * len(completions)
    start = max_completion_len - soft_punish_cache
    rewards = []
    for ids in completion_ids:
        n = len(ids)
        if n <= start:
            rewards.append(0.0)
        elif n <= max_completion_len:
            rewards.append((start - n) / soft_punish_cache)
        else:
            rewards.append(-1.0)
    return rewards
