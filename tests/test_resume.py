"""Checkpoints and resume on CPU: SIGKILL and resume reproduces a straight run; SIGUSR1 saves and exits for a
requeue; an incomplete newest checkpoint is skipped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from open_grpo.checkpoints import MARKER, mark_complete, newest_complete, resume_from
from open_grpo.preemption import PREEMPTED_EXIT

from .conftest import ROOT

STEPS = 8
# 4 prompts, 1 prompt (8 completions) per step: an epoch is 4 steps, so step 6 is in the second epoch
SMALL = {"dataset_size": 4, "max_steps": STEPS, "save_strategy": "steps", "save_steps": 1, "max_completion_length": 8,
         "learning_rate": 1.0e-3}  # fmt: skip


def _run(recipe, prompt_log, extra_env=None, wait=True):
    env = {**os.environ, "PROMPT_LOG": str(prompt_log), **(extra_env or {})}
    cmd = [sys.executable, str(ROOT / "tests" / "resume_main.py"), "--config", str(recipe)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _prompts(log):
    return [json.loads(line)["prompts"] for line in log.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [2, 6])  # first epoch, second epoch
def test_sigkill_then_resume_matches_straight_run(write_recipe, tmp_path, kill_at):
    straight = write_recipe({**SMALL, "output_dir": str(tmp_path / "straight")}, name="straight.yaml")
    assert _run(straight, tmp_path / "straight.log").returncode == 0

    resumed = write_recipe({**SMALL, "output_dir": str(tmp_path / "resumed")}, name="resumed.yaml")
    killed = _run(resumed, tmp_path / "resumed.log", {"KILL_AT_STEP": str(kill_at)})
    assert killed.returncode == -signal.SIGKILL
    assert newest_complete(tmp_path / "resumed").name == f"checkpoint-{kill_at}"
    again = _run(resumed, tmp_path / "resumed.log")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {tmp_path / 'resumed'}/checkpoint-{kill_at}" in again.stderr

    # the same prompts, in the same order, as the straight run
    assert _prompts(tmp_path / "resumed.log") == _prompts(tmp_path / "straight.log")
    # the same final parameters (CPU, float32: equal up to summation order)
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_sigusr1_saves_and_exits_for_requeue(write_recipe, tmp_path):
    recipe = write_recipe({**SMALL, "max_steps": 50, "save_strategy": "no", "output_dir": str(tmp_path / "out")})
    proc = _run(recipe, tmp_path / "p.log", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path / "p.log").exists():  # the first step is under way
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT, out[-3000:]
    found = newest_complete(tmp_path / "out")
    assert found is not None and (found / "model.safetensors").exists() and (found / "optimizer.pt").exists()
    assert int(found.name.split("-")[1]) < 50


@pytest.mark.slow
def test_stop_file_stops_like_sigusr1(write_recipe, tmp_path):
    stop = tmp_path / "STOP"
    stop.touch()
    recipe = write_recipe({**SMALL, "max_steps": 50, "save_strategy": "no", "output_dir": str(tmp_path / "out")})
    run = _run(recipe, tmp_path / "p.log", {"OPEN_GRPO_STOP_FILE": str(stop)})
    assert run.returncode == PREEMPTED_EXIT
    assert newest_complete(tmp_path / "out").name == "checkpoint-1"


def test_incomplete_newest_checkpoint_is_skipped(tmp_path, caplog):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    mark_complete(tmp_path / "checkpoint-2", 2)
    mark_complete(tmp_path / "checkpoint-4", 4)  # checkpoint-6 was cut off mid-save: no marker
    (tmp_path / "checkpoint-6" / "model.safetensors").write_bytes(b"trunc")
    assert newest_complete(tmp_path) == tmp_path / "checkpoint-4"
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    assert resume_from(tmp_path, "never") is None
    assert resume_from(tmp_path, "auto") == str(tmp_path / "checkpoint-4")
    with pytest.raises(FileNotFoundError, match=MARKER):
        resume_from(tmp_path, str(tmp_path / "checkpoint-6"))
    assert resume_from(tmp_path / "empty", "auto") is None
