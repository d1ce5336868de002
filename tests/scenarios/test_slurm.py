"""slurm/train.sbatch on a real one-node SLURM (Debian's slurmctld/slurmd/munge on localhost): the CPU demo runs to
completion, and the preemption drill saves, requeues and finishes with the uninterrupted step count."""

import json
import os
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.support.slurm_cluster import Cluster, missing_binaries

SBATCH = ROOT / "slurm" / "train.sbatch"
IN_CI = os.environ.get("CI") == "true"


def _unavailable(reason):
    if IN_CI:  # CI installs SLURM (.ci/run): there these tests must run
        pytest.fail(f"SLURM tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if missing_binaries():
        _unavailable(f"missing {missing_binaries()} (apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        _unavailable("the test cluster runs its daemons as root")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Exception as e:  # noqa: BLE001
        cluster.stop()
        _unavailable(f"SLURM did not start: {e}")
    yield cluster
    cluster.stop()


def _submit(slurm, tmp_path, *args):
    env = {"PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "ACCELERATE": "cpu",
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}  # fmt: skip
    # a CPU job: the template's GPU request overridden, as slurm/README.md documents
    out = slurm.run("sbatch", "--parsable", "--gpus-per-node=0", "--output", f"{tmp_path}/slurm-%x-%j.out", "--chdir",
                    str(ROOT), "--export", "ALL", str(SBATCH), "demo", "--", *args, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def _wait(slurm, job, until, timeout, what, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = slurm.job_state(job)
        if until(state):
            return state
        if state[0] in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            pytest.fail(f"job {job} ended {state[0]}:\n{log.read_text()[-3000:] if log and log.exists() else ''}")
        time.sleep(2)
    pytest.fail(f"job {job} did not {what} in {timeout}s (state {slurm.job_state(job)})\n{slurm.logs()}")


def _steps(metrics):
    if not metrics.exists():
        return []
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"reward"' in line]


@pytest.mark.slow
def test_demo_job_runs_to_completion(slurm, tmp_path):
    job = _submit(slurm, tmp_path, "--max_steps", "3", "--dataset_size", "64", "--output_dir", str(tmp_path / "demo"))
    state, _ = _wait(slurm, job, lambda s: s[0] in ("COMPLETED", "FAILED", "CANCELLED"), 600, "finish")
    log = (tmp_path / f"slurm-open-grpo-{job}.out").read_text()
    assert state == "COMPLETED", log[-3000:]
    assert "[open-grpo] finished with exit code 0" in log
    assert _steps(tmp_path / "demo" / "metrics.jsonl") == [1, 2, 3]


@pytest.mark.slow
def test_preemption_drill(slurm, tmp_path):
    out = tmp_path / "drill"
    job = _submit(slurm, tmp_path, "--max_steps", "10", "--dataset_size", "64", "--output_dir", str(out))
    deadline = time.time() + 300
    while len(_steps(out / "metrics.jsonl")) < 2 and time.time() < deadline:
        time.sleep(1)
    assert len(_steps(out / "metrics.jsonl")) >= 2, "the job never trained"
    signal = slurm.run("scancel", "--batch", "--signal=USR1", job)
    assert signal.returncode == 0, signal.stderr
    # saved, requeued, restarted, finished. SLURM holds a requeued job ~2 minutes before it may start again: once it
    # is back in the queue the drill lets it start now (what an admin's `scontrol update ... StartTime=now` does).
    log_file = tmp_path / f"slurm-open-grpo-{job}.out"
    _wait(slurm, job, lambda s: s[1] >= 1 or s[0] == "COMPLETED", 600, "requeue", log_file)
    slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    state, restarts = _wait(
        slurm, job, lambda s: s[0] == "COMPLETED" and s[1] >= 1, 600, "restart and complete", log_file
    )
    log = (tmp_path / f"slurm-open-grpo-{job}.out").read_text()
    assert "USR1: asking every rank" in log and f"requeueing job {job}" in log
    assert "(restart 0)" in log and "(restart 1)" in log  # one log, appended across both runs
    assert "[open-grpo] finished with exit code 0" in log
    steps = _steps(out / "metrics.jsonl")
    assert steps == list(range(1, 11)), steps  # every step once, the same final step as an uninterrupted run
    assert (out / "model.safetensors").exists()
