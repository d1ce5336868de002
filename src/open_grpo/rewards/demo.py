"""`lowercase_letters`: the demo's reward, one a random-weight model learns within minutes on a CPU.

A language-consistency reward in the spirit of DeepSeek-R1's: the share of the completion's characters that are
lowercase ASCII letters. A random model starts near 0.6 (Qwen's vocabulary mixes scripts, digits and symbols);
GRPO moves it towards 1.0 by concentrating on lowercase English word pieces.
"""

from __future__ import annotations

from open_grpo.rewards.text import completion_text


def lowercase_letters(completions, **columns) -> list[float]:
    """Share of the completion's characters that are lowercase ASCII letters (a-z); 0.0 for an empty completion."""
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        rewards.append(sum("a" <= ch <= "z" for ch in text) / len(text) if text else 0.0)
    return rewards
