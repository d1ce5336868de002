"""`code_tests`: run the completion's code against the row's tests in the sandbox; the share (or all) that pass.

The code is the last fenced block of the completion (```python, ```py or a bare ```; an unclosed block, cut by
the length limit, does not count). The row's tests (the `tests` column, or JSON text of it) come in two forms:

- stdio: a list of {input, output} (or {inputs: [...], outputs: [...]}): the program runs once per test with the
  input on stdin, and its stdout is compared to the output in the trainer (trailing whitespace of each line and
  trailing blank lines ignored), never by the program;
- function (HumanEval): {test, entry_point, prompt}: one run of prompt + code + test + `check(entry_point)`, which
  passes only if the program runs to its end: the sandbox's nonce, so `os._exit(0)` or `sys.exit(0)` before the
  asserts fails.

Scores: `mode: fraction` the share of tests passed, `pass_fail` 1.0 only if all pass; 0.0 without a code block;
None (cannot score) when the row has no tests or they cannot be read. Every run is one call of the shared sandbox
(`sandbox:` recipe key), all runs of a batch in parallel over its worker pool. `rewards/code_tests/timeouts` counts
completions with a run stopped by the wall clock (a program that loops scores 0 there, not None).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from open_grpo.rewards.events import note
from open_grpo.rewards.hooks import checks_params
from open_grpo.rewards.limits import bounds_itself
from open_grpo.rewards.text import completion_text
from open_grpo.sandbox.recipe import needs_sandbox, shared_sandbox

MODES = ("fraction", "pass_fail")
PYTHON_FENCES = ("python", "py", "python3", "")
FENCE = "```"


def extract_code(text: str) -> str | None:
    """The last closed fenced code block tagged as Python (or untagged), or None. Linear time."""
    parts = text.split(FENCE)
    last = None
    for block in parts[1:-1:2]:  # between an opening and its closing fence
        language, _, body = block.partition("\n")
        if language.strip().lower() in PYTHON_FENCES and body.strip():
            last = body
    return last


def read_tests(value: Any) -> tuple[str, Any] | None:
    """('stdio', [(input, output), ...]) or ('function', {test, entry_point, prompt}), or None if unreadable."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict) and isinstance(value.get("test"), str) and isinstance(value.get("entry_point"), str):
        return "function", value
    if isinstance(value, dict) and isinstance(value.get("inputs"), list) and isinstance(value.get("outputs"), list):
        if len(value["inputs"]) != len(value["outputs"]):
            return None
        value = [{"input": i, "output": o} for i, o in zip(value["inputs"], value["outputs"])]
    if isinstance(value, list) and value and all(isinstance(t, dict) and "output" in t for t in value):
        return "stdio", [(_text(t.get("input", "")), _text(t["output"])) for t in value]
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def same_output(got: str, expected: str) -> bool:
    """Equal up to trailing whitespace on each line and trailing blank lines."""

    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.rstrip().splitlines()]

    return lines(got) == lines(expected)


def function_program(code: str, tests: dict) -> str:
    """HumanEval's check: the prompt (its imports and signature) first, so a completion that gives only the body or
    leaves out the imports still runs; the completion's own definition replaces the prompt's stub."""
    prompt = tests.get("prompt") or ""
    return f"{prompt}\n{code}\n\n{tests['test']}\n\ncheck({tests['entry_point']})\n"


def check_params(params: dict) -> list[str]:
    """Recipe-time checks of this reward's parameters (the registry calls this)."""
    mode = params.get("mode", "fraction")
    return [] if mode in MODES else [f"'mode' must be one of {', '.join(MODES)}, got {mode!r}"]


@bounds_itself  # each run has the sandbox's wall-clock limit
@needs_sandbox
@checks_params(check_params)
def code_tests(completions, *, mode: str = "fraction", tests_column: str = "tests", **columns) -> list[float | None]:
    """Share of the row's tests (stdio or HumanEval-style) the completion's last ```python block passes, sandboxed."""
    if mode not in MODES:
        raise ValueError(check_params({"mode": mode})[0])
    rows = columns.get(tests_column)
    scores: list[float | None] = [None] * len(completions)
    if rows is None:
        return scores
    runs: list[tuple[int, str, str, str | None]] = []  # (completion, program, stdin, expected stdout or None)
    for i, (completion, tests) in enumerate(zip(completions, rows)):
        parsed = read_tests(tests)
        if parsed is None:
            continue
        code = extract_code(completion_text(completion))
        if code is None:
            scores[i] = 0.0
            continue
        kind, cases = parsed
        if kind == "function":
            runs.append((i, function_program(code, cases), "", None))
        else:
            runs.extend((i, code, stdin, expected) for stdin, expected in cases)
    results = shared_sandbox().run_many([(program, stdin) for _, program, stdin, _ in runs]) if runs else []
    passed: dict[int, list[bool]] = defaultdict(list)
    timed_out = set()
    for (i, _, _, expected), result in zip(runs, results):
        if expected is None:  # the program's own asserts: it must have run to its end (the nonce)
            passed[i].append(result.ok)
        else:  # compared here; a program may end with sys.exit(0)
            clean = result.exit_code == 0 and result.killed_reason is None
            passed[i].append(clean and same_output(result.stdout, expected))
        if result.timed_out:
            timed_out.add(i)
    note("timeouts", len(timed_out))
    for i, outcome in passed.items():
        scores[i] = sum(outcome) / len(outcome) if mode == "fraction" else float(all(outcome))
    return scores
