"""Checkpoints and resume on CPU, end to end: SIGKILL and resume reproduces a straight run (one rank and two);
a kill between saving and marking loses nothing under save_total_limit; a finished run is not trained again;
`resume: weights`; SIGUSR1/SIGTERM save and exit for a requeue, also during start-up; an incomplete newest checkpoint
is skipped."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from open_grpo.runs.resume import read_run
from open_grpo.trainer.checkpoints import checkpoints, mark_complete, newest_complete, read_marker
from open_grpo.trainer.metrics import read_metrics
from open_grpo.trainer.preemption import PREEMPTED_EXIT, PREEMPTED_MARKER
from tests.conftest import ROOT

STEPS = 8
# 4 prompts, 1 prompt (8 completions) per step: an epoch is 4 steps, so step 6 is in the second epoch
SMALL = {"dataset_size": 4, "max_steps": STEPS, "save_strategy": "steps", "save_steps": 1, "max_completion_length": 8,
         "learning_rate": 1.0e-3}  # fmt: skip


def _run(recipe, prompt_log, extra_env=None, wait=True, args=()):
    env = {**os.environ, "PROMPT_LOG": str(prompt_log), **(extra_env or {})}
    cmd = [sys.executable, str(ROOT / "tests" / "support" / "resume_main.py"), "--config", str(recipe), *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _prompts(log):
    return [json.loads(line)["prompts"] for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_then_resume_matches_straight_run(write_recipe, tmp_path):
    """Killed (kill -9) in the first epoch, resumed, killed again in the second epoch, resumed: the same prompts in the
    same order and the same final weights as a run never interrupted."""
    straight = write_recipe({**SMALL, "output_dir": str(tmp_path / "straight")}, name="straight.yaml")
    assert _run(straight, tmp_path / "straight.log").returncode == 0

    resumed = write_recipe({**SMALL, "output_dir": str(tmp_path / "resumed")}, name="resumed.yaml")
    for kill_at in (2, 6):  # first epoch, second epoch
        killed = _run(resumed, tmp_path / "resumed.log", {"KILL_AT_STEP": str(kill_at)})
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert newest_complete(tmp_path / "resumed").name == f"checkpoint-{kill_at}"
        assert (tmp_path / "resumed" / "LOCK").is_file()  # kill -9 leaves the lock behind
    again = _run(resumed, tmp_path / "resumed.log")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {tmp_path / 'resumed'}/checkpoint-6" in again.stderr
    assert "taking over the stale lock" in again.stderr and not (tmp_path / "resumed" / "LOCK").exists()

    # the same prompts, in the same order, as the straight run
    assert _prompts(tmp_path / "resumed.log") == _prompts(tmp_path / "straight.log")
    # the same final parameters (CPU, float32: equal up to summation order)
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])  # SLURM's warning; preemption by another job
def test_signal_saves_and_exits_for_requeue(write_recipe, tmp_path, signum):
    recipe = write_recipe({**SMALL, "max_steps": 50, "save_strategy": "no", "output_dir": str(tmp_path / "out")})
    proc = _run(recipe, tmp_path / "p.log", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "p.log").exists():  # the first step is under way
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT, out[-3000:]
    found = newest_complete(tmp_path / "out")
    assert found is not None and (found / "model.safetensors").exists() and (found / "optimizer.pt").exists()
    assert int(found.name.split("-")[1]) < 50
    assert (tmp_path / "out" / PREEMPTED_MARKER).read_text().strip() == found.name.split("-")[1]


@pytest.mark.slow
def test_stop_during_startup_exits_for_requeue_without_a_checkpoint(write_recipe, tmp_path):
    """SIGUSR1 while the prompts load (before the model): exit 75 and the PREEMPTED marker, no step, no checkpoint."""
    out = tmp_path / "out"
    run = _run(write_recipe({**SMALL, "output_dir": str(out)}), tmp_path / "p.log", {"USR1_DURING_STARTUP": "1"})
    assert run.returncode == PREEMPTED_EXIT, run.stderr[-3000:]
    assert (out / PREEMPTED_MARKER).read_text().strip() == "0"
    assert newest_complete(out) is None and not (tmp_path / "p.log").exists()  # no step was trained


@pytest.mark.slow
def test_kill_before_marker_resume_finished_rerun_and_weights(write_recipe, tmp_path):
    """save_total_limit 1, killed after step 4 between writing checkpoint-4 and marking it: checkpoint-2 survives
    (rotation waits for the marker) and the run resumes from it, logging each step once; started again once finished,
    it says so and trains nothing; `resume: weights` then starts a new run from the final checkpoint's model."""
    out = tmp_path / "out"
    recipe = write_recipe({**SMALL, "max_steps": 5, "save_steps": 2, "save_total_limit": 1, "output_dir": str(out)})
    killed = _run(recipe, tmp_path / "p.log", {"KILL_BEFORE_MARK_AT_STEP": "4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert newest_complete(out) == out / "checkpoint-2"

    (out / PREEMPTED_MARKER).write_text("2\n")  # as a stop at step 2 would have left it, outside the job script
    resumed = _run(recipe, tmp_path / "p.log")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {out}/checkpoint-2" in resumed.stderr
    assert not (out / PREEMPTED_MARKER).exists()  # the resumed run finished: no stop pending
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in rows if "train_runtime" in r] == [5]
    assert [path.name for _, path in checkpoints(out)] == ["checkpoint-5"]
    run_id = read_run(out)["run_id"]
    assert read_marker(out / "checkpoint-5")["run_id"] == run_id and read_run(out)["finished"]["step"] == 5
    assert read_marker(out / "checkpoint-5")["model"]["name"] == "random:tiny"

    model, metrics = (out / "model.safetensors").stat().st_mtime_ns, (out / "metrics.jsonl").read_text()
    again = _run(recipe, tmp_path / "p.log")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        f"{out} holds run {run_id}, already finished at step 5" in again.stderr and "raise max_steps" in again.stderr
    )
    assert (out / "model.safetensors").stat().st_mtime_ns == model and (out / "metrics.jsonl").read_text() == metrics

    # learning rate 0: the new run's model stays what it started from, which must be checkpoint-5's
    weights = _run(
        recipe, tmp_path / "w.log", args=["--resume", "weights", "--max_steps", "1", "--learning_rate", "0"]
    )
    assert weights.returncode == 0, weights.stderr[-3000:]
    saved = out / "previous" / run_id / "checkpoint-5"
    assert (out / "previous" / run_id / "metrics.jsonl").read_text() == metrics
    assert (out / "previous" / run_id / "model.safetensors").stat().st_mtime_ns == model  # the final model kept
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "reward" in r] == [1]
    assert read_run(out)["run_id"] != run_id and read_run(out)["start"] == {"weights": str(saved)}
    a, b = load_file(saved / "model.safetensors"), load_file(out / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def _torchrun(recipe, prompt_log, *args):
    with socket.socket() as sock:  # a free port: a fixed one may be held by another run on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "tests" / "support" / "resume_main.py"), "--config", str(recipe), *args]  # fmt: skip
    env = {**os.environ, "PROMPT_LOG": str(prompt_log), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:  # a hung rank: take the whole launcher group down
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stderr


@pytest.mark.slow
def test_two_rank_resume_matches_straight_run(write_recipe, tmp_path):
    """Two CPU ranks (gloo), 2 steps: a run resumed from checkpoint-1 (all that a run killed after step 1 leaves)
    sees the same prompts on each rank and ends with the same parameters as the straight run. The same run continued
    on one rank is refused before any model, naming both layouts."""
    two = {**SMALL, "max_steps": 2, "per_device_train_batch_size": 4}  # 8 completions of 1 prompt per step
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    straight = write_recipe({**two, "output_dir": str(straight_dir)}, name="straight.yaml")
    rc, stderr = _torchrun(straight, tmp_path / "straight.log")
    assert rc == 0, stderr[-4000:]
    resumed_dir.mkdir()
    shutil.copytree(straight_dir / "checkpoint-1", resumed_dir / "checkpoint-1")
    resumed = write_recipe({**two, "output_dir": str(resumed_dir)}, name="resumed.yaml")
    rc, stderr = _torchrun(resumed, tmp_path / "resumed.log")
    assert rc == 0, stderr[-4000:]
    assert f"resuming from {resumed_dir}/checkpoint-1" in stderr

    def second_step(log):  # scored while global_step is still 1
        records = [json.loads(line) for line in log.read_text().splitlines()]
        return sorted((r["rank"], r["prompts"]) for r in records if r["step"] == 1)

    assert second_step(tmp_path / "resumed.log") == second_step(tmp_path / "straight.log")
    a, b = load_file(straight_dir / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)

    # the same 8 completions per step on one rank
    one_rank = _run(straight, tmp_path / "one.log", args=["--max_steps", "3", "--per_device_train_batch_size", "8"])
    assert one_rank.returncode == 2
    assert "saved with world size 2" in one_rank.stderr and "now world size 1" in one_rank.stderr


@pytest.mark.slow
def test_stop_file_stops_like_sigusr1(write_recipe, tmp_path):
    stop = tmp_path / "STOP"
    recipe = write_recipe({**SMALL, "max_steps": 50, "save_strategy": "no", "output_dir": str(tmp_path / "out")})
    proc = _run(recipe, tmp_path / "p.log", {"OPEN_GRPO_STOP_FILE": str(stop)}, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "p.log").exists():  # the first step is under way
        time.sleep(0.2)
    stop.touch()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT, out[-3000:]
    assert 1 <= int(newest_complete(tmp_path / "out").name.split("-")[1]) < 50


def test_incomplete_newest_checkpoint_is_skipped(write_recipe, tmp_path, caplog):
    from open_grpo.recipe import RecipeError, load_recipe
    from open_grpo.runs.resume import plan

    out = tmp_path / "out"
    for step in (2, 4, 6):
        (out / f"checkpoint-{step}").mkdir(parents=True)
    mark_complete(out / "checkpoint-2", 2)
    mark_complete(out / "checkpoint-4", 4)  # checkpoint-6 was cut off mid-save: no marker
    (out / "checkpoint-6" / "model.safetensors").write_bytes(b"trunc")
    assert newest_complete(out) == out / "checkpoint-4"
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    recipe = write_recipe({"max_steps": 10, "output_dir": str(out)})
    assert plan(load_recipe(recipe)).checkpoint == str(out / "checkpoint-4")
    assert plan(load_recipe(recipe, ["--resume", "never"])).checkpoint is None
    with pytest.raises(RecipeError, match="not a complete checkpoint"):
        plan(load_recipe(recipe, ["--resume", str(out / "checkpoint-6")]))
    assert plan(load_recipe(recipe, ["--output_dir", str(tmp_path / "empty")])).checkpoint is None
