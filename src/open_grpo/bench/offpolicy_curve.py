"""Off-policy (generating ahead) against on-policy on the sanity workload: reward curves from the same seed.

    python -m open_grpo.bench.offpolicy_curve --out DIR [--steps 50] [--seeds 0] [--ahead 4] [--model random:1.5b]

For each seed, two runs of `open_grpo.train` on one GPU, one after the other, each in its own process: the sanity
workload (bench/sanity_workload.py, layout tp1) on-policy, and the same with `steps_per_generation: --ahead` (one
engine call per --ahead optimizer steps, TRL's importance-sampling correction on), the off-policy row of
`open-grpo bench`. Both train the same number of optimizer steps on the same number of completions per step.

Writes DIR/offpolicy_curve.json (every run's reward, `offpolicy/staleness`, generation and step seconds per step;
the settings; exit codes and log tails of failed runs), DIR/offpolicy_curve.png and DIR/offpolicy_curve.logs.tar.gz;
the runs' own folders stay in a temporary folder ($OPEN_GRPO_BENCH_TMP). Criterion, fixed before any run:
off-policy is no worse when, on every seed, its mean reward over the last 10 steps is at least on-policy's minus
0.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.05
LAST = 10
VARIANTS = ("on_policy", "off_policy")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m open_grpo.bench.offpolicy_curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="random:1.5b")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seeds", default="0", help="comma-separated")
    p.add_argument("--ahead", type=int, default=4, help="steps_per_generation of the off-policy run")
    p.add_argument("--run-timeout", type=float, default=300, help="seconds per run before it is killed")
    p.add_argument("--deadline", type=float, default=0, help="seconds for the whole command (0: none)")
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    if args.steps < LAST or args.ahead < 2 or not args.seeds:
        p.error(f"--steps must be >= {LAST}, --ahead >= 2 and --seeds non-empty")
    return args


def run_recipe(model: str, data: str, variant: str, seed: int, steps: int, ahead: int, out: str) -> dict:
    """The sanity workload's recipe, made off-policy for `variant` 'off_policy'."""
    from open_grpo.bench.sanity_workload import LEARNING_RATE, recipe

    cfg = recipe(model, data, "tp1", seed, steps, LEARNING_RATE, out)
    if variant == "off_policy":
        cfg.update(steps_per_generation=ahead, vllm_importance_sampling_correction=True)
    return cfg


def read_curve(metrics: Path) -> dict:
    """Per optimizer step: reward (steps that generated log it), staleness, seconds."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    steps = [r for r in rows if "time/step" in r]
    return {
        "reward": [r.get("reward") for r in steps],
        "staleness": [r.get("offpolicy/staleness") for r in steps],
        "step_s": [r.get("time/step") for r in steps],
        "generation_s": [r.get("time/generation") for r in steps],
    }


def last_mean(values: list) -> float | None:
    kept = [v for v in values[-LAST:] if v is not None]
    return statistics.mean(kept) if kept else None


def verdict(curves: dict[str, dict[int, dict]]) -> dict:
    """Per seed: last-10-step mean reward of each variant, their difference, and whether off-policy is no worse."""
    seeds = {}
    for seed in sorted(set(curves.get("on_policy", {})) & set(curves.get("off_policy", {}))):
        on, off = (last_mean(curves[v][seed]["reward"]) for v in VARIANTS)
        ok = on is not None and off is not None and off >= on - TOLERANCE
        seeds[seed] = {"on_policy_last10": on, "off_policy_last10": off,
                       "difference": None if None in (on, off) else off - on, "no_worse": ok}  # fmt: skip
    return {"criterion": f"off-policy last-{LAST} mean reward >= on-policy's - {TOLERANCE}, every seed",
            "seeds": seeds, "no_worse": bool(seeds) and all(s["no_worse"] for s in seeds.values())}  # fmt: skip


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for variant, color in zip(VARIANTS, ("C0", "C1")):
        for seed, c in curves.get(variant, {}).items():
            xs = [i + 1 for i, r in enumerate(c["reward"]) if r is not None]
            ax.plot(xs, [r for r in c["reward"] if r is not None], color=color, alpha=0.8, lw=1.2,
                    label=f"{variant.replace('_', '-')} seed {seed}")  # fmt: skip
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("reward: lowercase_letters")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    import yaml

    from open_grpo.bench.driver import out_of_time, run_logged
    from open_grpo.bench.sanity_workload import write_prompts
    from open_grpo.data.models import resolve_model

    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("OPEN_GRPO_BENCH_TMP", tempfile.gettempdir())) / "open-grpo-offpolicy"
    work.mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model)
    write_prompts(work / "prompts.jsonl")
    runs, curves, last = [], {v: {} for v in VARIANTS}, 0.0
    for seed in args.seeds:
        for variant in VARIANTS:
            name = f"{variant}-s{seed}"
            left = args.deadline - (time.time() - start) if args.deadline else None
            if out_of_time(left, last):
                runs.append({"name": name, "exit": None, "ended": "skipped: deadline"})
                continue
            cfg = run_recipe(model, str(work / "prompts.jsonl"), variant, seed, args.steps, args.ahead,
                             str(work / name))  # fmt: skip
            (work / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            cmd = [sys.executable, "-m", "open_grpo.train", "--config", str(work / f"{name}.yaml")]
            print(f"[offpolicy] {name}: {' '.join(cmd)}", flush=True)
            begun = time.time()
            code = run_logged(cmd, work / f"{name}.log", min(left or args.run_timeout, args.run_timeout))
            last = time.time() - begun
            run = {"name": name, "exit": code, "seconds": round(time.time() - begun, 1)}
            if code != 0:
                run["log_tail"] = (work / f"{name}.log").read_text(errors="replace")[-2500:]
            runs.append(run)
            curves[variant][seed] = read_curve(work / name / "metrics.jsonl")
    result = {"settings": {"model": args.model, "steps": args.steps, "ahead": args.ahead, "seeds": args.seeds,
                           "recipe_off_policy_seed0": run_recipe("MODEL", "prompts.jsonl", "off_policy", 0,
                                                                 args.steps, args.ahead, "OUT")},
              "runs": runs, "curves": curves, "verdict": verdict(curves), "wall_s": round(time.time() - start)}  # fmt: skip
    (out / "offpolicy_curve.json").write_text(json.dumps(result, indent=1))
    plot(curves, out / "offpolicy_curve.png", f"sanity workload, {args.steps} steps: on-policy vs {args.ahead} ahead")
    with tarfile.open(out / "offpolicy_curve.logs.tar.gz", "w:gz") as tar:
        for log in sorted(work.glob("*.log")):
            tar.add(log, arcname=log.name)
    print(json.dumps(result["verdict"], indent=1))
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
