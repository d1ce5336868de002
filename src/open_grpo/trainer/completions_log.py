"""`<output_dir>/completions.jsonl`: what the model wrote, one JSON line per completion, for a person to read.

With TRL's `log_completions: true`, every logged training step appends its completions, one line each:

    {"step": 12, "prompt": "What is 3 + 4?", "completion": "seven", "solution": "7", "reward": 1.0,
     "rewards": {"accuracy": 1.0, "format": null}, "advantage": 0.93}

`prompt` is the text of the prompt's last message (the user's; the system prompt is the recipe's), `reward` the
weighted total the trainer optimises, `rewards` each reward's own value (null: it could not score the completion),
`solution` the gold answer where the data has one. With tools, `completion` is the text of every assistant turn
(what rewards read) and `tool_calls` lists each call: {"name", "arguments", "result"} (environments/transcript.py;
absent when the completion called none). The rows are the ones TRL gathers from every rank for its own
completions table (engine/gathered.py); only the main process writes. A step with more completions than
`completions_log_max_per_step` keeps its first ones (whole prompt groups, in TRL's order). On resume, rows past the
checkpoint's step are dropped first, so a step never appears twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import TrainerCallback

from open_grpo.engine.gathered import GatheredRows, totals
from open_grpo.environments.transcript import tool_calls_of
from open_grpo.rewards.text import completion_text

FILE_NAME = "completions.jsonl"


def drop_rows_after(path: str | os.PathLike, step: int) -> int:
    """Rewrite a JSON-lines file of `{"step": ...}` rows keeping only rows with step <= `step`, atomically; returns
    how many rows were dropped. A resumed run calls it with the checkpoint's step (0 for a fresh run: an empty file)."""
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row_step = json.loads(line).get("step")
        except json.JSONDecodeError:  # a line cut short by a crash mid-write
            dropped += 1
            continue
        if isinstance(row_step, int) and row_step > step:
            dropped += 1
        else:
            kept.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
    return dropped


def _text(message) -> str:
    """A prompt or completion as plain text: chat messages -> the last message's content."""
    if isinstance(message, list) and message and isinstance(message[-1], dict):
        content = message[-1].get("content", "")
        if isinstance(content, list):  # content blocks: keep the text ones
            return "".join(block.get("text", "") for block in content if isinstance(block, dict))
        return str(content)
    return str(message)


def _completion(completion) -> str:
    """One assistant message: its text; several turns (tool calls between them): the assistant's text of them all."""
    if isinstance(completion, list) and len(completion) > 1:
        return completion_text(completion)
    return _text(completion)


def _plain(value):
    return None if value is None or value != value else value  # NaN (a reward that could not score) -> null


class CompletionsLog(TrainerCallback):
    """Collects each training step's gathered completions (`capture`) and appends them to completions.jsonl when the
    step is logged (`flush`). Registered as a callback so that a resumed run first drops rows past its checkpoint."""

    def __init__(self, output_dir: str | os.PathLike, max_per_step: int | None, weights: list[float], is_main: bool):
        self.path = Path(output_dir) / FILE_NAME
        self.max_per_step = max_per_step
        self.weights = list(weights)
        self.is_main = is_main
        self._step: int | None = None
        self._rows: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if self.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            drop_rows_after(self.path, state.global_step)

    def capture(self, rows: GatheredRows, step: int) -> None:
        """Keep the rows of one generation call, made for optimizer step `step` (up to the per-step cap)."""
        if not self.is_main:
            return
        if step != self._step:  # a new step: the previous one was logged already, or is not a logged step
            self._step, self._rows = step, []
        room = len(rows) if self.max_per_step is None else max(0, self.max_per_step - len(self._rows))
        solutions = rows.extra.get("solution")
        rewards = totals(rows, self.weights)
        for i in range(min(room, len(rows))):
            completion = rows.completions[i]
            row = {"step": step, "prompt": _text(rows.prompts[i]), "completion": _completion(completion)}
            calls = tool_calls_of(completion)
            if calls:
                row["tool_calls"] = calls
            if solutions is not None:
                row["solution"] = solutions[i]
            row["reward"] = rewards[i]
            row["rewards"] = {name: _plain(values[i]) for name, values in rows.rewards.items()}
            row["advantage"] = _plain(rows.advantages[i])
            self._rows.append(row)

    def flush(self, global_step: int) -> int:
        """Append the rows of step `global_step` (the step being logged); returns how many were written."""
        if not self.is_main or self._step != global_step or not self._rows:
            return 0
        with self.path.open("a") as f:
            f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self._rows))
        written, self._rows = len(self._rows), []
        return written
