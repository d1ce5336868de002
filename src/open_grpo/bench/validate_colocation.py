"""Validate colocation on the GPUs of one machine: the tensor-parallel probe and/or the sanity-check runs, side by
side on the GPUs (bench/gpu_jobs.py), everything killed at --deadline seconds.

    python3 -m open_grpo.data.tiny_model outputs/random-1.5b --shape 1.5b          # a random-weight 1.5B model, once
    python -m open_grpo.bench.validate_colocation --model outputs/random-1.5b --out DIR --tp-probe --gpus 0,1,2,3
    python -m open_grpo.bench.validate_colocation --model outputs/random-1.5b --out DIR --sanity tp1-s0,tp1-s1,tp2-s0,dp2-s0

TP probe (bench/probe_tp.py, one torchrun per setting): TP=1; TP=2 with open_grpo's setting (`auto`), with
FlashInfer's trtllm backend, and with vLLM 0.26's own default (expected to crash or hang where multicast is off: it
reproduces the reported failure; safe, as no multicast object is ever created there); TP=4 with `auto`.
Writes DIR/tp_probe.json (one row per setting: resolved settings and generation times, or the exit code and log
tail of a crash) and DIR/sanity.json + DIR/reward_curves.png (bench/sanity_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from open_grpo.bench import sanity_check
from open_grpo.bench.gpu_jobs import Job, run_jobs

# (label, TP, vllm_allreduce_fusion, timeout seconds)
TP_SETTINGS = [  # TP=4 first: a job that needs every GPU would otherwise wait behind the smaller ones
    ("tp4-auto", 4, "auto", 300),
    ("tp2-auto", 2, "auto", 300),
    ("tp1", 1, "auto", 300),
    ("tp2-trtllm", 2, "trtllm", 300),
    ("tp2-vllm-default", 2, "vllm", 200),
]


def probe_jobs(model: str, out: Path) -> list[Job]:
    rows = out / "tp_probe.jsonl"
    return [
        Job(
            label,
            tp,
            f"torchrun --nproc-per-node {tp} --master-port {{port}} -m open_grpo.bench.probe_tp {model} {rows} "
            f"{label} --fusion {fusion}",
            timeout_s=timeout,
        )  # fmt: skip
        for label, tp, fusion, timeout in TP_SETTINGS
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tp-probe", action="store_true")
    p.add_argument("--sanity", default="", help="sanity-check runs, e.g. tp1-s0,tp1-s1,dp2-s0 (empty: none)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--gpus", default="0,1,2,3")
    p.add_argument("--deadline", type=float, default=540)
    args = p.parse_args()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs = probe_jobs(args.model, out) if args.tp_probe else []
    names = [x for x in args.sanity.split(",") if x]
    where = {}
    if names:
        more, where = sanity_check.sanity_jobs(args.model, out / "sanity", names, args.steps, args.lr, 420)
        jobs += more
    status = run_jobs(jobs, [int(g) for g in args.gpus.split(",")], out / "logs", deadline_s=args.deadline)

    if args.tp_probe:
        rows_file = out / "tp_probe.jsonl"
        rows = {}
        if rows_file.exists():
            rows = {r["label"]: r for r in map(json.loads, rows_file.read_text().splitlines())}
        probe = []
        for s in status:
            if s["name"] in {label for label, *_ in TP_SETTINGS}:
                row = {**s, **rows.get(s["name"], {})}
                if s["name"] not in rows and s.get("log"):
                    row["log_tail"] = Path(s["log"]).read_text(errors="replace")[-6000:]
                probe.append(row)
        env = {k: os.environ.get(k) for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST",
                                              "NVSHMEM_DISABLE_NVLS", "VLLM_FLASHINFER_ALLREDUCE_BACKEND")}  # fmt: skip
        (out / "tp_probe.json").write_text(json.dumps({"env": env, "command": " ".join(sys.argv), "rows": probe},
                                                      indent=1))  # fmt: skip
        for r in probe:
            print(f"[tp] {r['name']:<18} exit {r['exit']} {r.get('ended') or ''} gen {r.get('generate_s')} "
                  f"fuse={r.get('fuse_allreduce_rms')} backend={r.get('flashinfer_backend_env')}", flush=True)  # fmt: skip
    if names:
        result = sanity_check.collect(status, where, sanity_check.settings_of(names, args.steps, args.lr))
        (out / "sanity.json").write_text(json.dumps(result, indent=1))
        sanity_check.plot(result, out / "reward_curves.png")
        print(json.dumps(result["agreement"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
