"""Turning whatever TRL passes as a completion into text, for any input (None, chat messages, content blocks)."""

from __future__ import annotations

from typing import Any

OPEN_TAG, CLOSE_TAG = "<answer>", "</answer>"


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
    """The final answer's text: the last `<answer>...</answer>` if present (tagged=True), else the whole text.

    Pairs are matched left to right, each `<answer>` with the first `</answer>` after it (what a lazy regex finds),
    but in linear time: the regex retries every `<answer>` of an unclosed run to the end of the text, 17 s for
    `"<answer>" * 20000`, and this runs in the trainer process, outside the verifier's time bound.
    """
    last, pos = None, 0
    while (start := text.find(OPEN_TAG, pos)) >= 0:
        end = text.find(CLOSE_TAG, start + len(OPEN_TAG))
        if end < 0:
            break  # no pair starts after this point: stop instead of rescanning the rest for every later tag
        last, pos = text[start + len(OPEN_TAG) : end], end + len(CLOSE_TAG)
    return (last, True) if last is not None else (text, False)
