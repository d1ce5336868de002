"""TRL 1.16's completion buffers (`GRPOTrainer._logs`): the prompts, completions, per-reward values and advantages of
every rank, gathered by TRL itself for its completions table. Reading them here means no second gather.

`tool_arguments_as_json` makes the buffer's tool calls fit TRL's own parquet table.

Each `_generate_and_score_completions` call appends its gathered rows (one per completion, every rank's in rank
order, the `num_generations` completions of a prompt consecutive) to deques that keep the latest generation batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import islice


@dataclass
class GatheredRows:
    """The completions of one generation call, all ranks, in TRL's order."""

    prompts: list
    completions: list
    rewards: dict[str, list[float]]  # reward name -> value per completion (NaN: the reward could not score it)
    advantages: list[float]
    extra: dict[str, list] = field(default_factory=dict)  # columns added with TRL's `log_extra` (e.g. `solution`)

    def __len__(self) -> int:
        return len(self.completions)


def _tail(values, n: int) -> list:
    return list(islice(values, max(0, len(values) - n), None))


def latest_rows(trainer, n: int) -> GatheredRows:
    """The `n` rows the latest generation call appended (n = completions per rank x ranks)."""
    logs = trainer._logs
    return GatheredRows(
        prompts=_tail(logs["prompt"], n),
        completions=_tail(logs["completion"], n),
        rewards={name: _tail(logs["rewards"][name], n) for name in trainer.reward_func_names},
        advantages=_tail(logs["advantages"], n),
        extra={column: _tail(values, n) for column, values in logs["extra"].items()},
    )


def weighted_total(values: list[float], weights: list[float]) -> float | None:
    """One completion's reward as TRL trains on it: the weighted sum of the rewards that scored it (None-valued ones
    left out, TRL's `nansum`); None when no reward could score it."""
    scored = [(v, w) for v, w in zip(values, weights) if v is not None and not math.isnan(v)]
    return sum(v * w for v, w in scored) if scored else None


def totals(rows: GatheredRows, weights: list[float]) -> list[float | None]:
    """`weighted_total` of every row."""
    columns = list(rows.rewards.values())
    return [weighted_total([c[i] for c in columns], weights) for i in range(len(rows))]


def add_column(trainer, name: str, values: list) -> None:
    """A per-completion column for TRL to gather with the rows (TRL's `log_extra`, offered to reward functions)."""
    trainer._log_completion_extra(name, values)


def tool_arguments_as_json(trainer) -> None:
    """Each tool call's `arguments` in TRL's completion buffer as a JSON string, before TRL writes its table.

    TRL 1.16 writes the buffer to `completions/*.parquet` when it logs; pyarrow cannot store a struct without fields
    (a call with `{}` arguments, e.g. to a tool that takes none) nor one field with two types (two tools' `x`), and
    the run would crash there. Strings always fit. completions.jsonl captured the calls (as objects) earlier."""
    for completion in trainer._logs["completion"]:
        for message in completion if isinstance(completion, list) else []:
            for call in message.get("tool_calls") or [] if isinstance(message, dict) else []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and not isinstance(function.get("arguments"), str):
                    function["arguments"] = json.dumps(function.get("arguments"), ensure_ascii=False)
