"""`open-grpo bench`: GRPO throughput on a GPU, plain TRL against open_grpo's reference recipe, rows interleaved.

    open-grpo bench                                   # trl-default and open_grpo, A B A B, 8 measured steps each
    open-grpo bench --rows open_grpo,open_grpo-fold --baseline open_grpo --repeats 1   # one lever's own gain
    open-grpo bench --gpus 4 --accelerate zero2       # data-parallel rows (per-GPU numbers)
    open-grpo bench --rows trl-default,open_grpo,trl-default,open_grpo,open_grpo+own_process --repeats 1 \
        --deadline 570 --out DIR                      # an explicit order; runs that would end past 570 s are skipped

Bench shape: a Qwen2.5-1.5B-shaped model with random bf16 weights (every completion runs to the maximum length: a
deterministic worst case), 16 completions per GPU per step (2 prompts x 8), 1024 completion tokens, prompts of ~256
tokens (512 at most). Each run of a row is its own process; rows run interleaved (`--repeats`), so a drift of the
machine falls on every row alike. Reported per row: pooled per-step median and spread of completions/s per GPU, and
the ratio to the baseline row with a bootstrap interval and the range over repeats (stats.py); memory (allocated,
reserved, the device's used) and start-up time. The physical floor (decode: weight bytes per decode step over the
measured bandwidth, times the steps; training: 6 x params x tokens over the measured bf16 rate) is measured here.
Writes <out>/<UTC time>-<card>[-x<N>-<accelerate>].json (other shapes: <out>/other/), a PNG and a .logs.tar.gz
(every run's log and vllm_engine.json) beside it, and a table. The headline is the on-policy `open_grpo` row's
ratio; off-policy rows are labelled and reported apart.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from open_grpo.bench.report import plot, recorded_command, table
from open_grpo.bench.stats import headline, interleaved, summarize
from open_grpo.bench.variants import ROWS
from open_grpo.data.models import resolve_model
from open_grpo.errors import EXIT_CONFIG_ERROR, EXIT_OK
from open_grpo.planning.preflight import model_facts
from open_grpo.recipe.shipped import accelerate_config

START = time.time()  # --deadline counts from the command's start (imports and the ceilings' measurement included)


def measure_ceilings() -> dict:
    """Device-to-device copy bandwidth (bytes read + written) and bf16 matmul rate, measured on this card."""
    import torch

    x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")

    def timed(fn, reps):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / reps

    copy_s = timed(lambda: y.copy_(x), 20)
    mm_s = timed(lambda: a @ b, 20)
    out = {
        "card": torch.cuda.get_device_name(),
        "bandwidth_gbs": 2 * x.numel() / copy_s / 1e9,
        "bf16_tflops": 2 * 8192**3 / mm_s / 1e12,
    }
    return out  # the buffers are freed on return; main() empties the cache before the rows start


def floor_seconds(facts, ceilings: dict, completions: int, completion_len: int, prompt_len: int) -> dict:
    """The physical floor of one step per GPU: decode reads every weight once per step, training is 6 N T."""
    params = facts.num_params
    decode = 2 * params / (ceilings["bandwidth_gbs"] * 1e9) * completion_len
    train = 6 * params * completions * (completion_len + prompt_len) / (ceilings["bf16_tflops"] * 1e12)
    return {"decode_s": decode, "train_s": train, "floor_s": decode + train}


def run_logged(cmd: list[str], log: Path, timeout_s: float) -> int | str:
    """Run `cmd` with its output in `log`, in a session of its own: one that runs out of time, or whose driver is
    stopped (Ctrl-C, SIGTERM), is killed with every process it started (accelerate's workers, vLLM's helpers), so
    the card is free for what comes next."""
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_session(proc)
            return f"timeout after {timeout_s} s"
        except BaseException:
            _kill_session(proc)
            raise


def _kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `timeout`) unwinds like Ctrl-C, so the running row's session is killed too."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def run_row(name: str, model: str, args, out: Path, timeout_s: float | None = None) -> dict | None:
    cmd = [sys.executable, "-m", "open_grpo.bench.worker"]
    if args.gpus > 1:
        cmd = ["accelerate", "launch", "--num_processes", str(args.gpus), "--config_file",
               str(accelerate_config(args.accelerate)), "-m", "open_grpo.bench.worker"]  # fmt: skip
    cmd += ["--row", name, "--model", model, "--out", str(out), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--completion-len", str(args.completion_len),
            "--prompt-len", str(args.prompt_len), "--per-device", str(args.per_device)]  # fmt: skip
    log = out.with_suffix(".log")
    print(f"[bench] {name}: {' '.join(cmd)}  (log: {log})", flush=True)
    start = time.time()
    returncode = run_logged(cmd, log, timeout_s or args.row_timeout)
    if returncode != 0 or not out.exists():
        tail = log.read_text()[-3000:]
        print(f"[bench] {name} FAILED (exit {returncode}) after {time.time() - start:.0f}s:\n{tail}", flush=True)
        return {"name": name, "error": f"exit {returncode}", "log_tail": tail}
    return json.loads(out.read_text())


def add_arguments(p) -> None:
    p.add_argument("--rows", default="trl-default,open_grpo", help=f"comma-separated, from: {', '.join(ROWS)}")
    p.add_argument("--baseline", default="trl-default", help="the row every ratio is taken against (added if missing)")
    p.add_argument("--repeats", type=int, default=2, help="runs of every row, interleaved: A B A B ...")
    p.add_argument("--shape", default="1.5b", help="random:<shape> model (0.5b, 1.5b, 7b)")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--accelerate", default="zero2", help="accelerate config for --gpus > 1")
    p.add_argument("--steps", type=int, default=8, help="measured steps per run")
    p.add_argument("--warmup", type=int, default=2, help="steps per run before the measured ones")
    p.add_argument("--per-device", type=int, default=16)
    p.add_argument("--completion-len", type=int, default=1024)
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--row-timeout", type=int, default=900, help="seconds per run before it is killed")
    p.add_argument("--deadline", type=float, default=0, help="seconds for the whole command (0: none): a run that "
                   "would end past it (judged by the run before it) is skipped, the running one cut at it")  # fmt: skip
    p.add_argument("--out", default="bench/results")


def usage_problems(args) -> list[str]:
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    problems = [f"unknown row {n!r}" for n in [*names, args.baseline] if n not in ROWS]
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        problems.append(
            f"--repeats and --steps must be >= 1 and --warmup >= 0 (got {args.repeats}, {args.steps}, {args.warmup})"
        )
    return problems


def run_order(rows: str, baseline: str, repeats: int) -> list[str]:
    """The runs, in order: the baseline first if `rows` lacks it (every ratio comes from one file: one card, one
    machine session), then the rows interleaved `repeats` times."""
    names = [n.strip() for n in rows.split(",") if n.strip()]
    if baseline not in names:
        names.insert(0, baseline)
    return interleaved(names, repeats)


def run(args, argv: list[str]) -> int:
    """`open-grpo bench ...` (`argv`: the command line as given, recorded in the results)."""
    problems = usage_problems(args)
    if problems:
        print(f"open-grpo bench: {'; '.join(problems)}. Rows: {', '.join(ROWS)}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    order = run_order(args.rows, args.baseline, args.repeats)
    _stop_on_sigterm()
    import torch

    if not torch.cuda.is_available():
        print("open-grpo bench needs a CUDA GPU (see docs/PERFORMANCE.md for measured results)", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    bench_shape = (args.shape, args.per_device, args.completion_len, args.prompt_len) == ("1.5b", 16, 1024, 512)
    ceilings = measure_ceilings()
    torch.cuda.empty_cache()
    model = resolve_model(f"random:{args.shape}")
    floor = floor_seconds(model_facts(model), ceilings, args.per_device, args.completion_len, args.prompt_len)
    print(f"[bench] {ceilings['card']}: {ceilings['bandwidth_gbs']:.0f} GB/s, {ceilings['bf16_tflops']:.0f} TFLOP/s; "
          f"floor {floor['floor_s']:.2f} s/step (decode {floor['decode_s']:.2f}, train {floor['train_s']:.2f})")  # fmt: skip

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%MZ")
    card = re.sub(r"[^A-Za-z0-9]+", "-", ceilings["card"].replace("NVIDIA", "")).strip("-") or "gpu"
    out_dir = Path(args.out) if bench_shape else Path(args.out) / "other"  # bench shape = per GPU, any GPU count
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("OPEN_GRPO_BENCH_TMP", os.path.join(tempfile.gettempdir(), "open-grpo-bench")))
    work.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stamp}-{card}{'' if args.gpus == 1 else f'-x{args.gpus}-{args.accelerate}'}.json"
    result = {
        "date_utc": stamp,
        "card": ceilings["card"],
        "gpus": args.gpus,
        "shape": {
            "model": f"random:{args.shape}",
            "completions_per_gpu": args.per_device,
            "completion_len": args.completion_len,
            "prompt_len": args.prompt_len,
            "accelerate": args.accelerate if args.gpus > 1 else None,
        },  # fmt: skip
        "ceilings": ceilings,
        "floor": floor,
        "versions": _versions(),
        "command": recorded_command(argv),
        "baseline": args.baseline,
        "order": order,
        "rows": [],
        "summary": {},
    }
    started, last = time.time(), 0.0
    for i, name in enumerate(order):
        left = args.deadline - (time.time() - START) if args.deadline else None
        if out_of_time(left, last):
            print(f"[bench] {name}: skipped, {left:.0f} s left of --deadline {args.deadline:g}", flush=True)
            row = {"name": name, "error": "skipped: deadline"}
        else:
            begun = time.time()
            timeout = min(left or args.row_timeout, args.row_timeout)
            row = run_row(name, model, args, work / f"{stamp}-{i}-{name}.json", timeout)
            last = time.time() - begun
        if "error" not in row:
            row["floor_s"] = floor["floor_s"]
        result["rows"].append(row)
        result["summary"] = summarize(result["rows"], args.baseline)
        result["headline"] = headline(result["summary"])
        path.write_text(json.dumps(result, indent=1))  # after every run: a session cut short keeps what ran
        pack_logs(work, stamp, path.with_suffix(".logs.tar.gz"))
    title = f"GRPO step on {ceilings['card']} x{args.gpus} ({args.shape}), rows interleaved"
    plot(result["rows"], result["summary"], args.baseline, path.with_suffix(".png"), title, floor["floor_s"])
    print(table(result["rows"], result["summary"], args.baseline))
    if result.get("headline"):
        h = result["headline"]
        print(f"headline (on-policy): {h['row']} / {args.baseline} = {h['ratio']:.3f}x "
              f"[{h['ratio_ci95'][0]:.3f}, {h['ratio_ci95'][1]:.3f}]")  # fmt: skip
    print(f"[bench] wrote {path}, {path.with_suffix('.png')} and {path.with_suffix('.logs.tar.gz')} "
          f"({time.time() - started:.0f} s of runs)")  # fmt: skip
    return EXIT_OK


MIN_RUN_S = 60  # no run (start-up + steps) takes less: with less time left, none is started


def out_of_time(left: float | None, last: float) -> bool:
    """Whether a run should not start with `left` seconds of the deadline (None: no deadline), the run before it
    having taken `last` seconds (the first runs of a fresh machine also compile vLLM's graphs: the last run, not the
    longest, is what the next one will take)."""
    return left is not None and left < max(last, MIN_RUN_S)


def pack_logs(work: Path, stamp: str, tar_path: Path) -> None:
    """Every run's log and the engine settings each row's trainer recorded, in one archive."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for log in sorted(work.glob(f"{stamp}-*.log")):
            tar.add(log, arcname=log.name)
        for engine in sorted(work.glob("out-*/vllm_engine.json")):
            tar.add(engine, arcname=f"{engine.parent.name}-vllm_engine.json")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "vllm", "trl", "transformers", "accelerate", "deepspeed", "liger-kernel"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
