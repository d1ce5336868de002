"""Rewards: plain functions `reward(completions, *, <parameters>, **columns) -> list[float | None]`.

Every reward, built-in or third-party, is found through the entry-point group `open_grpo.rewards` (see
`registry.py`). None means "cannot score" (unparseable gold answer, verifier failure or timeout), never a silent 0.
"""

from open_grpo.rewards.text import completion_text

__all__ = ["completion_text"]
