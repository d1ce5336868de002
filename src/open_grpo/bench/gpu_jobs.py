"""Run shell jobs side by side on the GPUs of one machine, each on as many GPUs as it asks for.

Independent runs (seeds, layouts, probes) share the machine's GPUs, so a validation finishes in the time of its
longest jobs rather than their sum: a job starts as soon as enough GPUs are free, in list order, with CUDA_VISIBLE_DEVICES set to its own; each job gets free
ports ({port}, {port2} in its command) and its own log. Jobs that outlive their timeout, or the overall deadline,
are killed with their whole process group and reported as such.

    from gpu_jobs import Job, run_jobs
    results = run_jobs([Job("tp1-s0", 1, "python3 -m ..."), ...], gpus=[0, 1, 2, 3], deadline_s=540)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    name: str
    gpus: int
    command: str  # shell; {port}, {port2}, {port3} are replaced by free ports, {gpus} by the GPU list
    timeout_s: float = 600.0
    env: dict = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_jobs(
    jobs: list[Job], gpus: list[int], log_dir: str | Path, deadline_s: float, poll_s: float = 2.0
) -> list[dict]:
    """Run `jobs` on `gpus`; return one dict per job: name, gpus, exit code (None if never started), seconds, log,
    and why it ended early ('timeout', 'deadline', 'too many gpus')."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    pending = list(jobs)
    free = list(gpus)
    running: list[tuple[Job, subprocess.Popen, list[int], float]] = []
    results: dict[str, dict] = {}
    for job in jobs:
        if job.gpus > len(gpus):
            results[job.name] = {"name": job.name, "gpus": [], "exit": None, "seconds": 0.0, "ended": "too many gpus"}
    pending = [j for j in pending if j.name not in results]

    while pending or running:
        for job in list(pending):
            if job.gpus <= len(free) and time.time() - start < deadline_s:
                mine, free = free[: job.gpus], free[job.gpus :]
                ports = {"port": free_port(), "port2": free_port(), "port3": free_port()}
                command = job.command.format(gpus=",".join(map(str, mine)), **ports)
                log = log_dir / f"{job.name}.log"
                env = {**os.environ, **job.env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, mine))}
                with log.open("w") as f:
                    f.write(f"# {job.name} on GPUs {mine}: {command}\n")
                    f.flush()
                    proc = subprocess.Popen(command, shell=True, stdout=f, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # fmt: skip
                print(f"[jobs] {time.time() - start:5.0f}s start {job.name} on GPUs {mine}", flush=True)
                running.append((job, proc, mine, time.time()))
                pending.remove(job)
        time.sleep(poll_s)
        for item in list(running):
            job, proc, mine, began = item
            now = time.time()
            ended = None
            if proc.poll() is None:
                if now - began > job.timeout_s:
                    ended = "timeout"
                elif now - start > deadline_s:
                    ended = "deadline"
                else:
                    continue
            _kill(proc)  # also what a finished job left behind in its session (servers, engine workers)
            running.remove(item)
            free = sorted(free + mine)
            results[job.name] = {"name": job.name, "gpus": mine, "exit": proc.returncode, "seconds": round(now - began, 1),
                                 "log": str(log_dir / f"{job.name}.log"), "ended": ended}  # fmt: skip
            print(f"[jobs] {now - start:5.0f}s end {job.name}: exit {proc.returncode} {ended or ''} "
                  f"after {now - began:.0f}s", flush=True)  # fmt: skip
        if pending and not running and time.time() - start >= deadline_s:
            for job in pending:
                results[job.name] = {"name": job.name, "gpus": [], "exit": None, "seconds": 0.0, "ended": "deadline"}
            pending = []
    return [results[j.name] for j in jobs]


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
