"""One launch per output_dir (runs/lock.py): a second launch is refused naming the holder (exit 2, before anything is
written or loaded); a lock left by kill -9 or by a finished SLURM job is taken over; a requeued job takes its own back;
the ranks of one launch follow rank 0's answer. (The job script's check: tests/test_slurm_commands.py.)"""

import json
import logging
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from open_grpo.errors import RecipeError
from open_grpo.runs import lock

MAIN = SimpleNamespace(is_main_process=True, num_processes=1, device="cpu")


@pytest.fixture
def no_job(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def other_process():
    """A live process on this host: the holder of another launch's lock."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _hold(out, **record):
    out.mkdir(parents=True, exist_ok=True)
    holder = {"host": socket.gethostname(), "started": "2025-01-01 00:00:00", "token": "theirs", **record}
    (out / lock.LOCK).write_text(json.dumps(holder))
    return holder


def _stub_squeue(tmp_path, monkeypatch, body):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "squeue").write_text("#!/bin/bash\n" + body)
    (stubs / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")


def test_taken_and_released(tmp_path, no_job, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    out = tmp_path / "out"
    lock.acquire(out, MAIN)
    record = json.loads((out / lock.LOCK).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["slurm_job_id"] == "41"
    lock.acquire(out, MAIN)  # the same process again (an earlier launch in this process): its own lock
    lock.release(out)
    assert not (out / lock.LOCK).exists()


def test_a_second_launch_is_refused_naming_the_holder(write_recipe, tmp_path, no_job, other_process, monkeypatch):
    """The same recipe launched while another launch runs on its output_dir: exit 2 before anything is written."""
    from open_grpo import train

    out = tmp_path / "out"
    _hold(out, pid=other_process.pid, process_start=lock._start_ticks(other_process.pid), slurm_job_id="55",
          slurm_restart="0")  # fmt: skip
    monkeypatch.setattr(train, "resolve_model", lambda *a: pytest.fail("the model was touched"))
    assert train.cli(["--config", str(write_recipe({"max_steps": 1}))]) == 2
    assert sorted(p.name for p in out.iterdir()) == [lock.LOCK]  # nothing written: no run.json
    with pytest.raises(RecipeError) as e:
        lock.acquire(out, MAIN)
    message = str(e.value)
    assert f"pid {other_process.pid} on {socket.gethostname()}, SLURM job 55" in message
    assert "in use by another launch" in message and "--output_dir" in message and "scancel 55" in message


@pytest.mark.parametrize("how", ["killed", "reaped", "pid reused"])
def test_a_lock_left_by_kill_9_is_taken_over(tmp_path, no_job, caplog, other_process, how):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait() if how == "reaped" else None
    if how == "killed":  # killed, not yet reaped by its parent
        gone.kill()
        os.waitid(os.P_PID, gone.pid, os.WEXITED | os.WNOWAIT)
    pid, start = (other_process.pid, "1") if how == "pid reused" else (gone.pid, None)
    _hold(tmp_path, pid=pid, process_start=start)
    lock.acquire(tmp_path, MAIN)
    assert json.loads((tmp_path / lock.LOCK).read_text())["pid"] == os.getpid()
    assert "taking over the stale lock" in caplog.text and f"its process {pid}" in caplog.text
    gone.wait()


def test_a_lock_on_another_host_is_kept_unless_slurm_says_its_job_is_over(tmp_path, monkeypatch, no_job, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", "56")
    _hold(tmp_path, host="gpu17", pid=1234, slurm_job_id="55", slurm_restart="0")
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no squeue: it cannot be told
    assert "pid 1234 on gpu17, SLURM job 55" in lock.take(tmp_path)
    monkeypatch.setenv("PATH", path)
    _stub_squeue(tmp_path, monkeypatch, "echo RUNNING\n")
    assert "in use by another launch" in lock.take(tmp_path)
    (tmp_path / "bin" / "squeue").write_text("#!/bin/bash\necho 'slurm_load_jobs error: Invalid job id' >&2\nexit 1\n")
    assert lock.take(tmp_path) is None and "SLURM job 55 is over" in caplog.text


def test_a_requeued_job_takes_its_own_lock_back(tmp_path, monkeypatch, no_job, caplog):
    """Preempted on gpu17 and requeued onto this node: same job id, the next restart count."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    _hold(tmp_path, host="gpu17", pid=1234, slurm_job_id="777", slurm_restart="0")
    assert lock.launch_problem(tmp_path) is None  # the job script lets it start
    assert lock.take(tmp_path) is None
    assert "SLURM job 777 took it before it was requeued" in caplog.text and "stale" not in caplog.text
    _hold(tmp_path, host="gpu17", pid=1234, slurm_job_id="777", slurm_restart="1")  # two launches in one job start
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert "in use by another launch" in lock.take(tmp_path)


def test_every_rank_of_a_launch_follows_rank_0(tmp_path, no_job, other_process, monkeypatch):
    """Rank 0 takes the lock; one all-reduce tells the other ranks of its launch (its process group) the answer."""
    import torch.distributed

    rank1 = SimpleNamespace(is_main_process=False, num_processes=2, device="cpu")
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda flag: None)  # rank 0 took it (flag 0 everywhere)
    lock.acquire(tmp_path, rank1)
    assert not (tmp_path / lock.LOCK).exists()  # a rank other than 0 never touches the lock
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda flag: flag.add_(1))  # rank 0 was refused
    with pytest.raises(RecipeError, match="in use by another launch"):
        lock.acquire(tmp_path, rank1)
