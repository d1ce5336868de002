"""What a run leaves behind to read: `metrics.jsonl` (one line per logged step, flushed at once, so a crash loses
nothing), a reward-curve PNG, and a one-screen summary at the end.

After a resume, metrics.jsonl holds each step once: the rows a killed run logged past the checkpoint it resumes from
(and the summary row of an interrupted attempt) are dropped before the resumed run appends. The readers tolerate
what a crash or a reward that could not score leaves: a torn last line, `reward: null`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from open_grpo.trainer import evaluation

logger = logging.getLogger(__name__)

SUMMARY_KEY = "train_runtime"  # the Trainer's end-of-training row


class MetricsFile(TrainerCallback):
    """Append every log of the main process to `<output_dir>/metrics.jsonl`."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "metrics.jsonl"

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not state.global_step:  # a fresh run starts a fresh file; a resumed one appends
                self.path.write_text("")
            elif self.path.exists():  # keep what led up to the checkpoint; the resumed run logs the rest again
                rows = [
                    r
                    for r in read_metrics(self.path)
                    if r.get("step", 0) <= state.global_step and SUMMARY_KEY not in r
                ]
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
                tmp.replace(self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            row = {"step": state.global_step, "time": time.time()}
            row.update({evaluation.log_key(k): _plain(v) for k, v in logs.items()})  # eval_x -> eval/x
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


class CompactProgress(ProgressCallback):
    """The progress bar, with one short line per log instead of the full metrics dict (that goes to metrics.jsonl)."""

    KEYS = (("reward", "reward {:.3f}"), ("loss", "loss {:.4f}"), ("time/step", "{:.2f} s/step"),
            ("throughput/completion_tokens_per_s_per_gpu", "{:.0f} tok/s/gpu"), ("memory/peak_gib", "peak {:.1f} GiB"))  # fmt: skip

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            parts = [fmt.format(float(logs[k])) for k, fmt in self.KEYS if logs.get(k) is not None]
            if parts:
                self.training_bar.write(f"step {state.global_step}/{state.max_steps} | " + " | ".join(parts))
            elif line := evaluation.console_line(logs, state.global_step):
                self.training_bar.write(line)


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | Path) -> list[dict]:
    """Every row; a line cut short (the process was killed mid-write) is skipped with a warning."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s line %d is not whole JSON (cut off by a crash?): skipped", path, number)
    return rows


def training_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "reward" in r]


def plot_rewards(rows: list[dict], out: str | Path, title: str = "reward") -> Path:
    """Mean reward per logged step, with each reward's own mean, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows, rows = rows, training_rows(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [_nan(r["reward"]) for r in rows], label="reward (weighted sum)", lw=2)
    for key in sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")}):
        ax.plot(steps, [_nan(r.get(key)) for r in rows], label=key, lw=1, alpha=0.7)
    evaluation.plot_eval(ax, all_rows)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def _nan(value):
    return float("nan") if value is None else value


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]  # a step whose rewards all were None logs reward: null
    return sum(values) / len(values) if values else None


def summary(rows: list[dict], window: int = 10) -> dict:
    """First and last `window` logged steps' mean reward (None where no step could be scored), the mean step time,
    and the first and last evaluation. A run shorter than two windows compares its first and second halves."""
    evals, rows = evaluation.eval_summary(rows), training_rows(rows)
    if not rows:
        return {"eval": evals} if evals else {}
    window = max(1, min(window, len(rows) // 2))
    first = _mean(r["reward"] for r in rows[:window])
    last = _mean(r["reward"] for r in rows[-window:])
    return {
        "steps": rows[-1]["step"],
        "window": window,
        "reward_first": first,
        "reward_last": last,
        "reward_gain": last - first if first is not None and last is not None else None,
        "step_time_s": _mean(r.get("time/step") for r in rows),
        "eval": evals,
    }


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_summary(s: dict, output_dir: str | Path) -> str:
    if "steps" not in s:
        return "no training steps were logged"
    lines = [
        "-" * 60,
        f"open_grpo run finished: {s['steps']} steps, {_fmt(s['step_time_s'], '.2f')} s/step",
        f"mean reward, first {s['window']} logged steps: {_fmt(s['reward_first'], '.3f')}",
        f"mean reward, last {s['window']} logged steps:  {_fmt(s['reward_last'], '.3f')}  "
        f"(gain {_fmt(s['reward_gain'], '+.3f')})",
        *evaluation.format_eval_summary(s.get("eval", {})),
        f"metrics: {Path(output_dir) / 'metrics.jsonl'}",
        f"curve:   {Path(output_dir) / 'reward_curve.png'}",
        "-" * 60,
    ]
    return "\n".join(lines)
