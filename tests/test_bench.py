"""`open-grpo bench` logic on CPU: a row against the vLLM engine double, the floor, the table."""

import json
import os
import time

import pytest

from open_grpo.bench.driver import floor_seconds, run_logged, table
from open_grpo.bench.variants import OPEN_GRPO, ROWS
from open_grpo.bench.worker import main as bench_row
from open_grpo.models import resolve_model
from open_grpo.preflight import model_facts

from . import fake_vllm


def test_rows_keep_the_algorithm():
    # rows may change speed knobs, never the algorithm: no row touches the loss, generations or batch
    forbidden = {"loss_type", "beta", "num_generations", "per_device_train_batch_size", "steps_per_generation",
                 "num_iterations", "max_completion_length", "temperature", "epsilon"}  # fmt: skip
    for name, row in ROWS.items():
        assert not forbidden & set(row), name
    assert ROWS["trl-default"] == {"trainer": "trl"} and OPEN_GRPO["trainer"] == "open_grpo"


def test_floor():
    facts = model_facts("Qwen/Qwen2.5-Math-1.5B")
    f = floor_seconds(facts, {"bandwidth_gbs": 4300, "bf16_tflops": 790}, 16, 1024, 512)
    assert f["decode_s"] == pytest.approx(2 * facts.num_params / 4300e9 * 1024)
    assert 0.6 < f["decode_s"] < 0.9 and f["floor_s"] > f["decode_s"]


@pytest.mark.slow
@pytest.mark.parametrize("row", ["trl-default", "open_grpo"])
def test_row_with_engine_double(monkeypatch, tmp_path, row):
    fake_vllm.install(monkeypatch)
    out = tmp_path / "row.json"
    bench_row(["--row", row, "--model", resolve_model("random:tiny"), "--out", str(out), "--steps", "2",
               "--warmup", "1", "--per-device", "8", "--completion-len", "8", "--prompt-len", "64"])  # fmt: skip
    result = json.loads(out.read_text())
    assert result["name"] == row and len(result["steps"]) == 2
    assert result["completion_tokens_mean"] == 8
    for key in ("step_time_s_median", "completions_per_s_per_gpu", "completion_tokens_per_s_per_gpu", "peak_mem_gib"):
        assert key in result
    assert set(result["phases"]) >= {"generation", "weight_sync", "rewards", "train"}
    assert result["phases"]["generation"] > 0
    llm = fake_vllm.FakeLLM.instances[-1]
    assert "model.embed_tokens.weight" in llm.loaded
    n_params = len(set(llm.loaded))
    syncs = 3  # one per step (on-policy)
    # TRL pushes one parameter per call; open_grpo's batched sync one chunk (the tiny model fits one) per step
    assert llm.load_calls == (syncs if row == "open_grpo" else syncs * n_params)
    print(table([{**result, "floor_s": 1.0}], result))


def test_row_out_of_time_is_killed_with_its_children(tmp_path):
    # accelerate launch starts workers of its own: a timed-out row must not leave them holding the card
    pid_file = tmp_path / "child.pid"
    cmd = ["bash", "-c", f"sleep 300 & echo $! > {pid_file}; echo started; wait"]
    result = run_logged(cmd, tmp_path / "row.log", timeout_s=2)
    assert result == "timeout after 2 s"
    assert "started" in (tmp_path / "row.log").read_text()
    child = int(pid_file.read_text())
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the row's child process survived the timeout")
    assert run_logged(["true"], tmp_path / "ok.log", timeout_s=10) == 0
