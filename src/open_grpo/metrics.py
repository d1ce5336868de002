"""What a run leaves behind to read: `metrics.jsonl` (one line per logged step, flushed at once, so a crash loses
nothing), a reward-curve PNG, and a one-screen summary at the end."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from . import evaluation


class MetricsFile(TrainerCallback):
    """Append every log of the main process to `<output_dir>/metrics.jsonl`."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "metrics.jsonl"

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not state.global_step:  # a fresh run starts a fresh file; a resumed one appends
                self.path.write_text("")

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
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


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
    ax.plot(steps, [r["reward"] for r in rows], label="reward (weighted sum)", lw=2)
    for key in sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")}):
        ax.plot(steps, [r.get(key) for r in rows], label=key, lw=1, alpha=0.7)
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


def summary(rows: list[dict], window: int = 10) -> dict:
    """First and last `window` logged steps' mean reward, the mean step time, and the first and last evaluation."""
    evals, rows = evaluation.eval_summary(rows), training_rows(rows)
    if not rows:
        return {"eval": evals} if evals else {}
    first = [r["reward"] for r in rows[:window]]
    last = [r["reward"] for r in rows[-window:]]
    step_times = [r["time/step"] for r in rows if r.get("time/step") is not None]
    return {
        "steps": rows[-1]["step"],
        "reward_first": sum(first) / len(first),
        "reward_last": sum(last) / len(last),
        "reward_gain": sum(last) / len(last) - sum(first) / len(first),
        "step_time_s": sum(step_times) / len(step_times) if step_times else None,
        "eval": evals,
    }


def format_summary(s: dict, output_dir: str | Path) -> str:
    if "steps" not in s:
        return "no training steps were logged"
    lines = [
        "-" * 60,
        f"open_grpo run finished: {s['steps']} steps, {s['step_time_s'] or float('nan'):.2f} s/step",
        f"mean reward, first {10} logged steps: {s['reward_first']:.3f}",
        f"mean reward, last {10} logged steps:  {s['reward_last']:.3f}  (gain {s['reward_gain']:+.3f})",
        *evaluation.format_eval_summary(s.get("eval", {})),
        f"metrics: {Path(output_dir) / 'metrics.jsonl'}",
        f"curve:   {Path(output_dir) / 'reward_curve.png'}",
        "-" * 60,
    ]
    return "\n".join(lines)
