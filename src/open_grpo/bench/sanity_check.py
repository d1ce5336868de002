"""The colocation sanity check: does GRPO learn the same thing whatever the layout?

A Qwen2.5-1.5B-shaped model with random weights learns the `lowercase_letters` reward (share of lowercase ASCII
letters in the completion; a random model starts near 0.6) through open_grpo, with the same global batch (32
completions a step: 4 prompts x 8) and the same recipe in every layout, 2 seeds each.

Sampling temperature 0.1 (why: open_grpo/bench/sanity_workload.py, where the workload's recipe lives; on a 2-layer
CPU stand-in 1e-4 saturates the reward in 3 steps, 1e-5 moves it slowly; the recipe takes 2e-5).

    tp1     colocate, 1 GPU
    tp2     colocate, 2 GPUs, vLLM tensor parallel 2 (both ranks train data-parallel)
    dp2     colocate, 2 GPUs, vLLM per GPU (TP 1)
    server  1 training GPU + 1 GPU running `trl vllm-serve`

    python -m open_grpo.bench.sanity_check run --model PATH --out DIR [--layouts tp1,tp2,dp2,server] [--seeds 0,1]
    python -m open_grpo.bench.sanity_check report A/sanity.json B/sanity.json --out docs/sanity/sanity.json \\
        --png docs/sanity/reward_curves.png      # runs made in several calls, merged

`run` writes DIR/sanity.json (every run's reward per step, settings, exit codes) and the plot. Layouts agree when
each one's mean curve (over seeds, 5-step moving average) lies within the seed spread of the reference layout
(tp1) widened by its own: |mean_L - mean_tp1| <= range_L + range_tp1 at 90% of the steps or more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from open_grpo.bench.gpu_jobs import Job, run_jobs
from open_grpo.bench.sanity_workload import GLOBAL_COMPLETIONS, LAYOUTS, recipe, write_prompts  # noqa: F401


def command(layout: str, recipe_path: Path, log: Path) -> str:
    gpus, procs, _, mode = LAYOUTS[layout]
    config = "single_gpu" if procs == 1 else "ddp"
    train = (f"accelerate launch --config_file accelerate_configs/{config}.yaml --num_processes {procs} "
             f"--main_process_port {{port}} -m open_grpo.train --config {recipe_path}")  # fmt: skip
    if mode == "colocate":
        return train
    # server: the second GPU serves (TRL's own server), the first trains and pushes its weights over NCCL
    first, second = "$(echo $CUDA_VISIBLE_DEVICES | cut -d, -f1)", "$(echo $CUDA_VISIBLE_DEVICES | cut -d, -f2)"
    serve = (f"CUDA_VISIBLE_DEVICES={second} python3 -m trl.scripts.vllm_serve --model $MODEL --port {{port2}} "
             f"--gpu_memory_utilization 0.5 --max_model_len 512 > {log} 2>&1 &")  # fmt: skip
    return (f"{serve} SERVER=$!; CUDA_VISIBLE_DEVICES={first} {train} "
            f"--vllm_server_port {{port2}} --vllm_group_port {{port3}}; rc=$?; kill $SERVER; exit $rc")  # fmt: skip


def read_run(out: Path) -> dict:
    rows = []
    path = out / "metrics.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "reward" in r]
    return {
        "reward": [r["reward"] for r in steps],
        "generation_s": [r.get("time/generation") for r in steps],
        "step_s": [r.get("time/step") for r in steps],
        "completion_len": [r.get("completions/mean_length") for r in steps],
    }


def smooth(xs: list[float], k: int = 5) -> list[float]:
    return [statistics.mean(xs[max(0, i - k + 1) : i + 1]) for i in range(len(xs))]


def agreement(runs: dict[str, dict[str, list[float]]], reference: str = "tp1") -> dict:
    """Per layout: the share of steps where |mean_L - mean_ref| <= range_L + range_ref (smoothed curves)."""

    def stats(curves: list[list[float]]):
        n = min(len(c) for c in curves)
        sm = [smooth(c[:n]) for c in curves]
        return [statistics.mean(v) for v in zip(*sm)], [max(v) - min(v) for v in zip(*sm)]

    full = {name: list(c.values()) for name, c in runs.items() if c and all(len(v) > 0 for v in c.values())}
    if reference not in full:
        return {}
    ref_mean, ref_range = stats(full[reference])
    out = {}
    for name, curves in full.items():
        mean, rng = stats(curves)
        n = min(len(mean), len(ref_mean))
        inside = [abs(mean[i] - ref_mean[i]) <= rng[i] + ref_range[i] for i in range(n)]
        out[name] = {
            "steps": n,
            "share_within_spread": round(sum(inside) / n, 3) if n else None,
            "agrees": bool(n) and sum(inside) / n >= 0.9,
            "first5_mean": round(statistics.mean(mean[:5]), 4) if n else None,
            "last5_mean": round(statistics.mean(mean[-5:]), 4) if n else None,
        }
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = {"tp1": "C0", "tp2": "C1", "dp2": "C2", "server": "C3"}
    for layout, seeds in result["curves"].items():
        curves = [c for c in seeds.values() if c]
        if not curves:
            continue
        for c in curves:
            ax.plot(range(1, len(c) + 1), c, color=colors.get(layout), alpha=0.25, lw=1)
        n = min(len(c) for c in curves)
        mean = [statistics.mean(v) for v in zip(*(c[:n] for c in curves))]
        verdict = result["agreement"].get(layout, {})
        label = f"{layout} (mean of {len(curves)} seeds; {verdict.get('share_within_spread', 'n/a')} within spread)"
        ax.plot(range(1, n + 1), smooth(mean), color=colors.get(layout), lw=2, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("reward: lowercase_letters")
    shape = result["settings"].get("model_shape", "?")
    ax.set_title(f"GRPO sanity check: {shape}, {result.get('card', '?')}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_names(layouts: list[str], seeds: list[int]) -> list[str]:
    """`tp1-s0`, `dp2-s0`, ..., `tp1-s1`, ...: seeds interleaved, so a deadline leaves every layout one seed."""
    return [f"{layout}-s{seed}" for seed in seeds for layout in layouts]


def sanity_jobs(model: str, out: Path, names: list[str], steps: int, lr: float,
                timeout_s: float) -> tuple[list[Job], dict[str, Path]]:  # fmt: skip
    """The runs of the check (`<layout>-s<seed>`) as jobs for gpu_jobs.run_jobs, and where each writes metrics."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    data = out / "prompts.jsonl"
    write_prompts(data)
    jobs, where = [], {}
    for name in names:
        layout, seed = name.rsplit("-s", 1)
        seed = int(seed)
        if layout not in LAYOUTS:
            raise SystemExit(f"unknown layout {layout!r} in {name!r}; layouts: {', '.join(LAYOUTS)}")
        cfg = recipe(model, str(data), layout, seed, steps, lr, str(out / name))
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        jobs.append(Job(name, LAYOUTS[layout][0], command(layout, path, out / f"{name}-server.log"),
                        timeout_s=timeout_s, env={"MODEL": model}))  # fmt: skip
        where[name] = out / name
    return jobs, where


def collect(status: list[dict], where: dict[str, Path], settings: dict) -> dict:
    """The check's result: every run's curves and timings, exit codes (log tails of failures), agreement."""
    curves, timing = {}, {}
    for s in status:
        if s["name"] not in where:
            continue
        layout, seed = s["name"].rsplit("-s", 1)
        got = read_run(where[s["name"]])
        curves.setdefault(layout, {})[seed] = got["reward"]
        timing.setdefault(layout, {})[seed] = {k: got[k] for k in ("generation_s", "step_s", "completion_len")}
        if s["exit"] != 0 and s.get("log"):
            s["log_tail"] = Path(s["log"]).read_text(errors="replace")[-2500:]
    try:
        import torch

        card = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        card = None
    result = {"card": card, "settings": settings, "runs": [s for s in status if s["name"] in where],
              "curves": curves, "timing": timing}  # fmt: skip
    result["agreement"] = agreement(curves)
    return result


def settings_of(names: list[str], steps: int, lr: float) -> dict:
    layouts = sorted({n.rsplit("-s", 1)[0] for n in names})
    return {
        "model_shape": "Qwen2.5-1.5B (random weights)",
        "global_completions_per_step": GLOBAL_COMPLETIONS,
        "layouts": {k: dict(zip(("gpus", "train_processes", "vllm_tp", "vllm_mode"), LAYOUTS[k])) for k in layouts},
        "recipe_tp1_seed0": recipe("MODEL", "prompts.jsonl", "tp1", 0, steps, lr, "OUT"),
        "command": " ".join(sys.argv),
    }


def run(args) -> int:
    out = Path(args.out).resolve()
    layouts, seeds = args.layouts.split(","), [int(s) for s in args.seeds.split(",")]
    jobs, where = sanity_jobs(args.model, out, run_names(layouts, seeds), args.steps, args.lr, args.job_timeout)
    status = run_jobs(jobs, [int(g) for g in args.gpus.split(",")], out / "logs", deadline_s=args.deadline)
    result = collect(status, where, settings_of(list(where), args.steps, args.lr))
    (out / "sanity.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "reward_curves.png")
    print(json.dumps(result["agreement"], indent=1))
    return 0


def merge(results: list[dict]) -> dict:
    """Results of several calls (layouts split between them) as one."""
    out = {"card": results[0].get("card"), "settings": dict(results[0]["settings"]), "runs": [], "curves": {},
           "timing": {}}  # fmt: skip
    out["settings"]["layouts"] = {}
    out["settings"]["commands"] = []
    for r in results:
        out["settings"]["layouts"].update(r["settings"]["layouts"])
        # an input may itself be a merge (its calls' commands) or one call's result (its command)
        out["settings"]["commands"] += r["settings"].get("commands") or [r["settings"].get("command")]
        out["runs"] += r["runs"]
        for key in ("curves", "timing"):
            for layout, seeds in r[key].items():
                out[key].setdefault(layout, {}).update(seeds)
        if r.get("card") != out["card"]:
            out["card"] = f"{out['card']} / {r.get('card')}"
    out["settings"].pop("command", None)
    return out


def report(args) -> int:
    result = merge([json.loads(Path(p).read_text()) for p in args.json])
    result["agreement"] = agreement(result["curves"])
    Path(args.out).write_text(json.dumps(result, indent=1))
    plot(result, Path(args.png))
    print(json.dumps(result["agreement"], indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--layouts", default="tp1,tp2,dp2,server")
    r.add_argument("--seeds", default="0,1")
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--lr", type=float, default=2e-5)
    r.add_argument("--gpus", default="0,1,2,3")
    r.add_argument("--deadline", type=float, default=520)
    r.add_argument("--job-timeout", type=float, default=420)
    g = sub.add_parser("report")
    g.add_argument("json", nargs="+", help="sanity.json of one or more calls")
    g.add_argument("--out", required=True, help="the merged JSON")
    g.add_argument("--png", required=True)
    args = p.parse_args(argv)
    return run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
