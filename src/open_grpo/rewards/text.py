"""Turning whatever TRL passes as a completion into text, for any input (None, chat messages, content blocks)."""

from __future__ import annotations

import re
from typing import Any

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The assistant's text of one completion: a string, or chat messages whose content is a string or blocks."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        return "".join(_content_text(m.get("content")) for m in assistant)
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # content blocks: [{"type": "text", "text": ...}, ...]
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def answer_text(text: str) -> tuple[str, bool]:
    """The final answer's text: the last `<answer>...</answer>` if present (tagged=True), else the whole text."""
    tagged = ANSWER_TAG.findall(text)
    return (tagged[-1], True) if tagged else (text, False)
