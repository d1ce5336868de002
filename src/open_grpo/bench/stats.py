"""The numbers `open-grpo bench` reports: rows run interleaved, each row's per-step spread, and each row's ratio to
the baseline from pooled per-step medians with a bootstrap interval and the range over repeats.

Throughput is completions per second per GPU, one value per measured step. A row that runs several times
(`--repeats`) pools the steps of all its runs. The ratio is median(row's steps) / median(baseline's steps); its 95%
interval resamples each run's steps with replacement (stratified by run, so each run keeps its weight) for both
rows, 2,000 times, with a fixed seed. The repeats range pairs the k-th run of a row with the k-th run of the
baseline: min and max of those ratios. Off-policy rows (variants.py) count each engine call's cycle of optimizer
steps as one value; they get a ratio like any row, labelled, and never the headline (`headline`).
"""

from __future__ import annotations

import random
import statistics

METRIC = "throughput/completions_per_s_per_gpu"
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


def interleaved(names: list[str], repeats: int) -> list[str]:
    """The order rows run in: every row once, then again, `repeats` times (A B A B ...), so slow drifts of the
    machine fall on every row alike."""
    return [name for _ in range(repeats) for name in names]


def step_values(run: dict) -> list[float]:
    return [s[METRIC] for s in run.get("steps", [])]


def _median_of_resample(runs: list[list[float]], rng: random.Random) -> float:
    pooled = [x for steps in runs for x in rng.choices(steps, k=len(steps))]
    return statistics.median(pooled)


def ratio_interval(
    rows: list[list[float]], base: list[list[float]], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(rows) / median(base); each argument is a list of runs' step values."""
    rng = random.Random(seed)
    ratios = sorted(_median_of_resample(rows, rng) / _median_of_resample(base, rng) for _ in range(samples))
    tail = (1 - CONFIDENCE) / 2
    return ratios[int(tail * (samples - 1))], ratios[int(round((1 - tail) * (samples - 1)))]


def summarize(rows: list[dict], baseline: str) -> dict[str, dict]:
    """Per row name (in first-run order): runs, steps, pooled median and spread, ratio to the baseline with its
    bootstrap interval and repeats range, memory. Failed runs are counted but not pooled."""
    by_name: dict[str, list[dict]] = {}
    for run in rows:
        by_name.setdefault(run["name"], []).append(run)
    base_runs = [step_values(r) for r in by_name.get(baseline, []) if "error" not in r]
    base_runs = [v for v in base_runs if v]
    out = {}
    for name, runs in by_name.items():
        ok = [r for r in runs if "error" not in r and step_values(r)]
        entry: dict = {"runs": len(runs), "failed_runs": len(runs) - len(ok)}
        if ok:
            values = [step_values(r) for r in ok]
            pooled = [x for v in values for x in v]
            entry.update(
                steps=len(pooled),
                completions_per_s_per_gpu_median=statistics.median(pooled),
                completions_per_s_per_gpu_min=min(pooled),
                completions_per_s_per_gpu_max=max(pooled),
                run_medians=[statistics.median(v) for v in values],
                step_time_s_median=statistics.median(s["time/step"] for r in ok for s in r["steps"]),
                completion_tokens_mean=statistics.mean(r["completion_tokens_mean"] for r in ok),
                max_memory_allocated_gib=max(r.get("max_memory_allocated_gib", 0.0) for r in ok),
                max_memory_reserved_gib=max(r.get("max_memory_reserved_gib", 0.0) for r in ok),
                peak_total_gib=max(r.get("peak_total_gib", r.get("max_memory_reserved_gib", 0.0)) for r in ok),
                device_used_gib=max(r.get("device_used_gib", 0.0) for r in ok),
                off_policy=any(r.get("off_policy", False) for r in ok),
            )
            if base_runs:
                base_median = statistics.median(x for v in base_runs for x in v)
                entry["ratio"] = entry["completions_per_s_per_gpu_median"] / base_median
                entry["ratio_ci95"] = list(ratio_interval(values, base_runs))
                paired = [statistics.median(v) / statistics.median(b) for v, b in zip(values, base_runs)]
                entry["ratio_repeats_range"] = [min(paired), max(paired)]
        out[name] = entry
    return out


def headline(summary: dict[str, dict], row: str = "open_grpo") -> dict | None:
    """The on-policy headline: `row`'s ratio to the baseline (None where it has none, or the row is off-policy)."""
    s = summary.get(row, {})
    if "ratio" not in s or s.get("off_policy"):
        return None
    return {"row": row, "ratio": s["ratio"], "ratio_ci95": s["ratio_ci95"], "steps": s["steps"], "on_policy": True}
