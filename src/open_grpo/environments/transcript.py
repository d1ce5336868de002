"""The tool calls of one completion, read back from the messages TRL keeps for it (assistant turns with
`tool_calls`, each followed by one `tool` message per call), for completions.jsonl."""

from __future__ import annotations


def tool_calls_of(completion) -> list[dict]:
    """[{"name", "arguments", "result"}] in call order; empty for a completion without tool calls (or plain text).

    TRL appends the results of synchronous tools in call order and those of async tools after them, so each call is
    paired with the first unclaimed result of the same tool name in the messages that follow its turn."""
    if not isinstance(completion, list):
        return []
    calls = []
    for i, message in enumerate(completion):
        if not isinstance(message, dict) or not message.get("tool_calls"):
            continue
        results = []
        for later in completion[i + 1 :]:
            if not isinstance(later, dict) or later.get("role") != "tool":
                break
            results.append(later)
        for call in message["tool_calls"]:
            function = call.get("function", call) if isinstance(call, dict) else {}
            name = function.get("name")
            match = next((r for r in results if r.get("name") == name), None)
            if match is not None:
                results.remove(match)
            calls.append({"name": name, "arguments": function.get("arguments"),
                          "result": None if match is None else _content(match.get("content"))})  # fmt: skip
    return calls


def _content(content):
    if isinstance(content, list):  # content blocks (a multimodal tool result): keep the text
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return content
