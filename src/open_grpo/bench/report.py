"""How `open-grpo bench` shows its results: the table printed at the end, the PNG beside the JSON, and the command
line recorded in the JSON (project-relative: no machine's paths)."""

from __future__ import annotations

import os
from pathlib import Path

from open_grpo.bench.stats import METRIC

PHASES = ["generation", "weight_sync", "rewards", "logprobs", "scoring_other", "train"]


def recorded_command(argv: list[str]) -> str:
    """`open-grpo bench ...` as given, with any absolute path (an output folder outside the project) as DIR."""
    words = ["DIR" if os.path.isabs(w) else w for w in argv]
    return " ".join(["open-grpo", "bench", *words])


def label(name: str, off_policy: bool) -> str:
    """A row's name as reported: off-policy rows say so."""
    return f"{name} (off-policy)" if off_policy else name


def table(rows: list[dict], summary: dict[str, dict], baseline: str) -> str:
    """One line per run (medians, spread, phases), then one line per row: pooled median and the ratio. Memory: the
    training process's allocated and reserved peaks, `total` adding an engine process's reserved memory, the card's
    used memory."""
    head = (f"{'run':<34}{'s/step':>8}{'compl/s/gpu (min-max)':>24}{'alloc':>7}{'resv':>7}{'total':>7}{'used':>7}"
            f"{'start':>7}  phases (s)")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        name = label(r["name"], r.get("off_policy", False))
        if "error" in r:
            lines.append(f"{name:<34}FAILED: {r['error']}")
            continue
        spread = f"{r['completions_per_s_per_gpu']:.2f} ({r['completions_per_s_per_gpu_min']:.2f}-{r['completions_per_s_per_gpu_max']:.2f})"
        phases = " ".join(f"{k}={v:.2f}" for k, v in r["phases"].items() if v >= 0.005)
        lines.append(
            f"{name:<34}{r['step_time_s_median']:>8.2f}{spread:>24}{r['max_memory_allocated_gib']:>7.1f}"
            f"{r['max_memory_reserved_gib']:>7.1f}{r.get('peak_total_gib', r['max_memory_reserved_gib']):>7.1f}"
            f"{r['device_used_gib']:>7.1f}{r.get('startup_s', 0):>7.0f}  {phases}"
        )
    head = f"{'row':<34}{'runs x steps':>13}{'compl/s/gpu':>12}{'tokens':>8}  vs {baseline}: ratio [95% bootstrap] (repeats min-max)"
    lines += ["", head, "-" * len(head)]
    for name, s in summary.items():
        shown = label(name, s.get("off_policy", False))
        if "steps" not in s:
            lines.append(f"{shown:<34}{s['runs']:>4} runs, all failed")
            continue
        ratio = ""
        if "ratio" in s:
            lo, hi = s["ratio_ci95"]
            rlo, rhi = s["ratio_repeats_range"]
            ratio = f"{s['ratio']:.3f} [{lo:.3f}, {hi:.3f}] ({rlo:.3f}-{rhi:.3f})"
        runs = f"{s['runs'] - s['failed_runs']} x {s['steps'] // max(1, s['runs'] - s['failed_runs'])}"
        lines.append(
            f"{shown:<34}{runs:>13}{s['completions_per_s_per_gpu_median']:>12.2f}{s['completion_tokens_mean']:>8.0f}  {ratio}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], summary: dict[str, dict], baseline: str, path: Path, title: str, floor_s: float) -> None:
    """Left: each run's phases (median step). Right: every measured step's completions/s per GPU, per row, with the
    pooled median and the ratio to the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    labels = [f"{i + 1}. {label(r['name'], r.get('off_policy', False))}" for i, r in enumerate(ok)]
    names = [n for n, s in summary.items() if "steps" in s]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.45 * max(len(ok), len(names)) + 2.2))
    start = [0.0] * len(ok)
    for phase in PHASES:
        vals = [r["phases"].get(phase, 0.0) for r in ok]
        left.barh(labels, vals, left=start, label=phase)
        start = [a + b for a, b in zip(start, vals)]
    left.axvline(floor_s, color="k", ls="--", lw=1, label="physical floor")
    left.set_xlabel("seconds per optimizer step (median of the run), in run order")
    left.invert_yaxis()
    left.legend(fontsize=7, loc="lower right")
    for y, name in enumerate(names):
        xs = [s[METRIC] for r in ok if r["name"] == name for s in r["steps"]]
        right.scatter(xs, [y] * len(xs), s=12, alpha=0.6)
        med = summary[name]["completions_per_s_per_gpu_median"]
        right.plot([med, med], [y - 0.3, y + 0.3], color="k", lw=2)
        if "ratio" in summary[name] and name != baseline:
            lo, hi = summary[name]["ratio_ci95"]
            right.annotate(f"{summary[name]['ratio']:.2f}x [{lo:.2f}, {hi:.2f}]", (med, y + 0.35), fontsize=8)
    right.set_yticks(range(len(names)), [label(n, summary[n].get("off_policy", False)) for n in names])
    right.invert_yaxis()
    right.set_xlabel(f"completions/s per GPU, every measured step (bar: pooled median; ratio vs {baseline})")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
