"""One launch per output_dir: `<output_dir>/LOCK`, taken by rank 0 before anything is written there.

Two launches on one output_dir (the same sbatch submitted twice, a second `make train`) would interleave metrics,
checkpoints and COMPLETE markers. Rank 0 of the first launch creates LOCK (atomically: absent or whole), recording
who holds it: pid, host, the process's start time, SLURM job id and restart count, torchrun's run id and rendezvous
address, the time. A second launch finds it and exits 2 naming the holder. The other ranks of a launch learn rank 0's
answer from one all-reduce over the launch's own process group (being in that group is what makes them one launch),
so all ranks of a launch stop together, or all go on.

The lock is deleted when the process exits, and survives kill -9. A stale lock is taken over with a warning: its
process is gone (or its pid is another process now) on this host, or its SLURM job is over (`squeue` no longer lists
it). The lock of an earlier start of this same launch is taken back with an info line: this SLURM job before a
requeue (same job id, another restart count), or workers restarted by torchrun (same run id and rendezvous). A lock
held on another host that cannot be checked (no SLURM job, no `squeue`) is never taken: the message says how to
remove it once that launch is gone. `open-grpo launch-args` runs the same check before a job starts its nodes.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

from open_grpo.errors import RecipeError

logger = logging.getLogger(__name__)

LOCK = "LOCK"
# `squeue -o %T` states of a job that will not run again (SLURM's squeue man page, JOB STATE CODES)
SLURM_OVER = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
              "PREEMPTED", "TIMEOUT"}  # fmt: skip
SQUEUE_TIMEOUT_S = 30
TAKEOVER_SETTLE_S = 0.1  # two launches taking over one stale lock at once: the last writer holds it


def _proc_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]; None where there is no such process (or /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> str | None:
    fields = _proc_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22 of proc(5): starttime


def identity() -> dict:
    """Who this process is, as a lock records it."""
    env = os.environ
    job = env.get("SLURM_JOB_ID")
    run_id = env.get("TORCHELASTIC_RUN_ID")
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _start_ticks(os.getpid()),
        "slurm_job_id": job,
        "slurm_restart": env.get("SLURM_RESTART_COUNT", "0") if job else None,
        "torchrun_run_id": run_id if run_id and run_id != "none" else None,  # torchrun's default rdzv id is "none"
        "rendezvous": f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '')}" if env.get("MASTER_ADDR") else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "token": secrets.token_hex(8),
    }


def _alive(pid: int, process_start: str | None) -> bool:
    """Whether `pid` on this host is still the process that took the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    fields = _proc_fields(pid)
    if fields and fields[0] in ("Z", "X"):  # killed, not yet reaped
        return False
    return not (process_start and fields and _start_ticks(pid) != process_start)  # else: the pid was reused


def slurm_job_over(job_id: str) -> bool | None:
    """True when SLURM says the job will not run again, False while it is pending or running, None: cannot tell."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                              timeout=SQUEUE_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return True if "invalid job id" in done.stderr.lower() else None
    state = done.stdout.strip().upper()
    return not state or state in SLURM_OVER


def why_free(holder: dict, me: dict) -> tuple[bool, str] | None:
    """(stale, why) when `me` may take the lock `holder` wrote; stale False: an earlier start of this launch.
    None: the holder is live (or cannot be told to be gone)."""
    same_host, pid, job = holder.get("host") == me["host"], holder.get("pid"), holder.get("slurm_job_id")
    if same_host and pid == me["pid"]:
        return False, "this process took it earlier"
    if same_host and isinstance(pid, int) and _alive(pid, holder.get("process_start")):
        return None
    if job and job == me["slurm_job_id"] and holder.get("slurm_restart") != me["slurm_restart"]:
        return False, f"SLURM job {job} took it before it was requeued"
    run = (holder.get("torchrun_run_id"), holder.get("rendezvous"))
    if run[0] and run == (me["torchrun_run_id"], me["rendezvous"]):
        return False, "an earlier worker group of this torchrun launch took it"
    if same_host:
        return True, f"its process {pid} on {me['host']} is gone"
    if job and job != me["slurm_job_id"] and slurm_job_over(job):
        return True, f"SLURM job {job} is over"
    return None


def describe(holder: dict) -> str:
    who = f"pid {holder.get('pid')} on {holder.get('host')}"
    if holder.get("slurm_job_id"):
        who += f", SLURM job {holder['slurm_job_id']} (restart {holder.get('slurm_restart')})"
    return f"{who}, since {holder.get('started')}"


def in_use_message(path: Path, holder: dict) -> str:
    job = holder.get("slurm_job_id")
    return (
        f"{path.parent} is in use by another launch ({describe(holder)}): two launches on one output_dir would "
        f"interleave its metrics, checkpoints and completion markers. Wait for it to finish"
        f"{f' (or scancel {job})' if job else ''}, or give this launch another output_dir (--output_dir DIR). If "
        f"that launch is gone and this host cannot tell (another host, no SLURM), delete {path}"
    )


def read(path: Path) -> dict | None:
    """The lock's record; {} for an unreadable one; None where there is no lock."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def _write_new(path: Path, record: dict) -> bool:
    """Create the lock with `record` unless it exists: written aside, then linked (atomic, also on NFS)."""
    tmp = path.with_name(f".{LOCK}.{record['token']}")
    tmp.write_text(json.dumps(record, indent=1))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        try:
            with open(path, "x") as f:
                f.write(json.dumps(record, indent=1))
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def _replace(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{LOCK}.{record['token']}")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


_held: dict[Path, str] = {}  # the locks this process holds -> their tokens


def release(output_dir) -> None:
    """Delete `<output_dir>/LOCK` if this process holds it (at the end of a launch, and at exit, whatever the exit)."""
    path = Path(output_dir) / LOCK
    token = _held.pop(path, None)
    if token and (read(path) or {}).get("token") == token:
        path.unlink(missing_ok=True)


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        release(path.parent)


def take(output_dir) -> str | None:
    """Take `<output_dir>/LOCK` for this process until it exits; the refusal message if another launch holds it."""
    path = Path(output_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    me = identity()
    if not _write_new(path, me):
        holder = read(path)
        free = (True, "it is unreadable") if holder == {} else why_free(holder, me) if holder else (False, "")
        if free is None:
            return in_use_message(path, holder)
        stale, why = free
        if stale:
            logger.warning("taking over the stale lock %s (%s): %s", path, describe(holder) if holder else "", why)
        elif why:
            logger.info("taking back the lock %s: %s", path, why)
        _replace(path, me)
        time.sleep(TAKEOVER_SETTLE_S)
        if (read(path) or {}).get("token") != me["token"]:  # another launch took it over at the same time
            return in_use_message(path, read(path) or {})
    _held[path] = me["token"]
    return None


def acquire(output_dir, state) -> None:
    """Rank 0 takes the lock; every rank of the launch learns the answer. Raises `RecipeError` (exit 2) on every
    rank when another launch holds it. `state`: accelerate's PartialState (or an Accelerator)."""
    problem = take(output_dir) if state.is_main_process else None
    refused = problem is not None
    if state.num_processes > 1:
        import torch

        flag = torch.tensor([float(refused)], device=state.device)
        torch.distributed.all_reduce(flag)
        refused = flag.item() > 0
    if refused:
        raise RecipeError(problem or f"{output_dir} is in use by another launch (rank 0's message names it)")


def launch_problem(output_dir) -> str | None:
    """Before a job starts its nodes (launch-args): the refusal the launch would get, without taking the lock."""
    path = Path(output_dir) / LOCK
    holder = read(path)
    if not holder:
        return None
    return in_use_message(path, holder) if why_free(holder, identity()) is None else None
