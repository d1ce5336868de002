"""`open-grpo bench` logic on CPU: rows against the vLLM engine double, the run order, the ratio and its interval,
the floor, the table and the plot."""

import json
import os
import random
import time

import pytest

from open_grpo.bench.driver import floor_seconds, out_of_time, pack_logs, run_logged, run_order
from open_grpo.bench.report import plot, recorded_command, table
from open_grpo.bench.stats import headline, interleaved, ratio_interval, summarize
from open_grpo.bench.variants import REFERENCE_RECIPE, ROWS, steps_per_cycle
from open_grpo.bench.worker import main as bench_row
from open_grpo.bench.worker import merge_cycles, whole_cycles
from open_grpo.data.models import resolve_model
from open_grpo.planning.preflight import model_facts
from tests.support import fake_vllm

ALGORITHM_KEYS = {"loss_type", "beta", "num_generations", "per_device_train_batch_size", "steps_per_generation",
                  "num_iterations", "max_completion_length", "temperature", "top_p", "top_k", "epsilon",
                  "vllm_importance_sampling_correction", "vllm_importance_sampling_mode", "learning_rate"}  # fmt: skip


def test_rows_keep_the_algorithm():
    # rows may change speed knobs, never the algorithm, unless marked as measuring what a part of the loss costs or
    # as off-policy by design (reported apart)
    for name, row in ROWS.items():
        touched = ALGORITHM_KEYS & set(row["keys"])
        assert not touched or row.get("changes_loss") or row.get("off_policy"), name
    assert [n for n, r in ROWS.items() if r.get("off_policy")] == ["open_grpo-ahead"]
    assert ROWS["open_grpo-ahead"]["keys"]["steps_per_generation"] == 4 == steps_per_cycle("open_grpo-ahead")
    assert ROWS["open_grpo-ahead"]["keys"]["vllm_importance_sampling_correction"] is True
    assert steps_per_cycle("open_grpo") == 1
    assert ROWS["open_grpo+own_process"]["keys"] == {"vllm_engine_process": "own_process"}
    assert ROWS["trl-default"] == {"kind": "trl", "keys": {}}
    assert ROWS["open_grpo"] == {"kind": "recipe", "keys": {}}  # the recipe exactly, workload aside
    assert REFERENCE_RECIPE == "qwen-math-1.5b"


def test_recipe_overrides_round_trip():
    from open_grpo.recipe.overrides import parse_overrides, to_words

    keys = {"a": True, "b": 3, "c": {"x": "Y"}, "d": None}
    words = to_words(keys)
    assert words == ["--a", "true", "--b", "3", "--c", '{"x": "Y"}', "--d", "null"]
    assert parse_overrides(words, keys) == ({"a": "true", "b": "3", "c": '{"x": "Y"}', "d": "null"}, [])


def test_runs_are_interleaved():
    assert interleaved(["a", "b"], 2) == ["a", "b", "a", "b"]
    assert run_order("open_grpo", "trl-default", 2) == ["trl-default", "open_grpo", "trl-default", "open_grpo"]
    assert run_order("open_grpo,open_grpo-fold", "open_grpo", 1) == ["open_grpo", "open_grpo-fold"]


def fake_run(name, values):
    steps = [{"throughput/completions_per_s_per_gpu": v, "time/step": 16 / v} for v in values]
    return {"name": name, "steps": steps, "completion_tokens_mean": 1024.0, "max_memory_allocated_gib": 50.0,
            "max_memory_reserved_gib": 60.0, "device_used_gib": 70.0}  # fmt: skip


def test_ratio_from_pooled_medians_with_interval():
    rng = random.Random(1)
    base = [[4 + rng.gauss(0, 0.3) for _ in range(8)] for _ in range(2)]
    fast = [[6 + rng.gauss(0, 0.3) for _ in range(8)] for _ in range(2)]
    rows = [fake_run("trl-default", base[0]), fake_run("open_grpo", fast[0]),
            fake_run("trl-default", base[1]), fake_run("open_grpo", fast[1]), {"name": "open_grpo", "error": "x"}]  # fmt: skip
    s = summarize(rows, "trl-default")
    import statistics

    expected = statistics.median(fast[0] + fast[1]) / statistics.median(base[0] + base[1])
    assert s["open_grpo"]["ratio"] == pytest.approx(expected)
    lo, hi = s["open_grpo"]["ratio_ci95"]
    assert lo < expected < hi and 1.3 < lo and hi < 1.7
    rlo, rhi = s["open_grpo"]["ratio_repeats_range"]
    paired = [statistics.median(f) / statistics.median(b) for f, b in zip(fast, base)]
    assert (rlo, rhi) == (min(paired), max(paired))
    assert s["open_grpo"]["runs"] == 3 and s["open_grpo"]["failed_runs"] == 1 and s["open_grpo"]["steps"] == 16
    assert s["trl-default"]["ratio"] == 1.0
    # the same distribution: the interval covers 1; a seeded bootstrap gives the same interval again
    same = ratio_interval([base[1]], [base[0]])
    assert same[0] < 1 < same[1] and same == ratio_interval([base[1]], [base[0]])


def test_floor():
    facts = model_facts("Qwen/Qwen2.5-Math-1.5B")
    f = floor_seconds(facts, {"bandwidth_gbs": 4300, "bf16_tflops": 790}, 16, 1024, 512)
    assert f["decode_s"] == pytest.approx(2 * facts.num_params / 4300e9 * 1024)
    assert 0.6 < f["decode_s"] < 0.9 and f["floor_s"] > f["decode_s"]


def test_recorded_command_has_no_machine_paths():
    cmd = recorded_command(["--rows", "open_grpo", "--out", "/some/machine/dir"])
    assert cmd == "open-grpo bench --rows open_grpo --out DIR"
    assert recorded_command(["--out", "bench/results"]) == "open-grpo bench --out bench/results"


@pytest.mark.slow
def test_rows_with_engine_double(monkeypatch, tmp_path):
    """trl-default and open_grpo (the reference recipe) on CPU; the table and the plot from their results."""
    monkeypatch.setenv("OPEN_GRPO_BENCH_TMP", str(tmp_path))
    fake_vllm.install(monkeypatch)
    runs = []
    for row in ("trl-default", "open_grpo"):
        out = tmp_path / f"{row}.json"
        bench_row(["--row", row, "--model", resolve_model("random:tiny"), "--out", str(out), "--steps", "2",
                   "--warmup", "1", "--per-device", "8", "--completion-len", "8", "--prompt-len", "64"])  # fmt: skip
        result = json.loads(out.read_text())
        runs.append(result)
        assert result["name"] == row and len(result["steps"]) == 2 and result["completion_tokens_mean"] == 8
        for key in ("step_time_s_median", "completions_per_s_per_gpu", "max_memory_allocated_gib",
                    "max_memory_reserved_gib", "device_used_gib", "startup_s", "card"):  # fmt: skip
            assert key in result, key
        assert all("throughput/completions_per_s_per_gpu" in s for s in result["steps"])
        assert result["phases"]["generation"] > 0
    llm_trl, llm_ours = fake_vllm.FakeLLM.instances[-2:]
    trl, ours = runs
    # TRL: per-parameter weight sync, vLLM's default outputs, the separate old-logprob pass
    n_params = len(set(llm_trl.loaded))
    assert llm_trl.load_calls == 3 * n_params  # one call per parameter and step (on-policy)
    # one chunk per step, plus one for the recipe's evaluation before the first step (eval_on_start)
    assert llm_ours.load_calls == 3 + 1
    assert llm_trl.sampling_params[-1].kwargs.get("detokenize", True) is True
    assert trl["phases"]["logprobs"] > 0
    # open_grpo: the recipe's settings, picked up through its own loading
    assert llm_ours.kwargs["max_model_len"] == 64 + 8 and llm_ours.kwargs["gpu_memory_utilization"] == 0.3
    assert llm_ours.sampling_params[-1].detokenize is False and llm_ours.sampling_params[-1].flat_logprobs is True
    assert ours["phases"]["logprobs"] == 0  # folded into the loss pass
    assert llm_ours.gc_enabled and not any(llm_ours.gc_enabled)
    assert ours["config"]["gradient_checkpointing"] is True  # auto: no memory plan without a GPU
    summary = summarize(runs, "trl-default")
    print(table(runs, summary, "trl-default"))
    plot(runs, summary, "trl-default", tmp_path / "bench.png", "test", 1.0)
    assert (tmp_path / "bench.png").stat().st_size > 0


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


def test_stopped_driver_takes_its_row_down(tmp_path):
    """SIGTERM to the driver (a scheduler, `timeout`) kills the running row's whole session, not only the driver."""
    import signal
    import subprocess
    import sys

    pid_file = tmp_path / "child.pid"
    driver = (
        "import sys; from pathlib import Path; from open_grpo.bench import driver; driver._stop_on_sigterm(); "
        f"driver.run_logged(['bash', '-c', 'sleep 300 & echo $! > {pid_file}; wait'], Path(sys.argv[1]), 600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path / "row.log")])
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.1)
    child = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the row's child process survived the driver's SIGTERM")


def test_off_policy_steps_are_counted_per_engine_call():
    # k = 4: the step that generates counts 64 completions, the three that train on them count none
    steps = []
    for _ in range(2):
        for i in range(4):
            gen = i == 0
            seconds = 3.0 if gen else 0.5
            steps.append({"time/step": seconds, "time/generation": 2.5 if gen else 0.0,
                          "throughput/completions_per_s_per_gpu": (64 if gen else 0) / seconds,
                          "throughput/completion_tokens_per_s_per_gpu": (64 * 1024 if gen else 0) / seconds,
                          "memory/peak_reserved_gib": 40.0 + i, "offpolicy/staleness": float(i),
                          **({"completions/mean_length": 1024.0} if gen else {})})  # fmt: skip
    merged = merge_cycles(steps + steps[:2], 4)  # an incomplete cycle at the end is left out
    assert len(merged) == 2
    m = merged[0]
    assert m["time/step"] == pytest.approx(4.5) and m["time/generation"] == pytest.approx(2.5)
    assert m["throughput/completions_per_s_per_gpu"] == pytest.approx(64 / 4.5)
    assert m["memory/peak_reserved_gib"] == 43.0 and m["offpolicy/staleness"] == 1.5
    assert m["completions/mean_length"] == 1024.0 and m["optimizer_steps"] == 4
    assert merge_cycles(steps, 1) is steps
    assert whole_cycles(1, 4) == 4 and whole_cycles(8, 4) == 8 and whole_cycles(2, 1) == 2


def test_off_policy_rows_labelled_and_kept_out_of_the_headline():
    def run(name, values, **extra):
        r = fake_run(name, values)
        v = [s["throughput/completions_per_s_per_gpu"] for s in r["steps"]]
        r.update(step_time_s_median=16 / v[0], completions_per_s_per_gpu=v[0], completions_per_s_per_gpu_min=min(v),
                 completions_per_s_per_gpu_max=max(v), phases={"generation": 2.0}, **extra)  # fmt: skip
        return r

    base = run("trl-default", [4.0] * 8)
    ahead = run("open_grpo-ahead", [9.0] * 2, off_policy=True, peak_total_gib=30.0)
    ours = run("open_grpo", [5.0] * 8, peak_total_gib=72.5)
    rows = [base, ours, ahead]
    summary = summarize(rows, "trl-default")
    assert summary["open_grpo-ahead"]["off_policy"] and not summary["open_grpo"]["off_policy"]
    assert summary["open_grpo"]["peak_total_gib"] == 72.5 and summary["trl-default"]["peak_total_gib"] == 60.0
    assert headline(summary)["row"] == "open_grpo" and headline(summary)["ratio"] == pytest.approx(1.25)
    assert headline(summary, "open_grpo-ahead") is None  # never the headline
    text = table(rows, summary, "trl-default")
    assert "open_grpo-ahead (off-policy)" in text and "open_grpo (off-policy)" not in text
    assert "72.5" in text  # the training process's reserved + the engine process's


def test_runs_are_skipped_near_the_deadline(tmp_path):
    assert not out_of_time(None, 500) and not out_of_time(300, 100)
    assert out_of_time(90, 100) and out_of_time(50, 0)  # less than the last run took, or than any run takes
    (tmp_path / "s-0-open_grpo.log").write_text("log")
    (tmp_path / "out-open_grpo").mkdir()
    (tmp_path / "out-open_grpo" / "vllm_engine.json").write_text("{}")
    pack_logs(tmp_path, "s", tmp_path / "x.logs.tar.gz")
    import tarfile

    with tarfile.open(tmp_path / "x.logs.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["out-open_grpo-vllm_engine.json", "s-0-open_grpo.log"]


@pytest.mark.slow
def test_ahead_row_with_engine_double(monkeypatch, tmp_path):
    """The off-policy row on CPU: one engine call per 4 optimizer steps, measured in whole cycles, staleness 0..3."""
    monkeypatch.setenv("OPEN_GRPO_BENCH_TMP", str(tmp_path))
    fake_vllm.install(monkeypatch)
    out = tmp_path / "ahead.json"
    bench_row(["--row", "open_grpo-ahead", "--model", resolve_model("random:tiny"), "--out", str(out), "--steps", "4",
               "--warmup", "1", "--per-device", "8", "--completion-len", "8", "--prompt-len", "64"])  # fmt: skip
    result = json.loads(out.read_text())
    llm = fake_vllm.FakeLLM.instances[-1]
    # warm-up rounded up to a whole cycle: 8 optimizer steps, 2 engine calls of 4 x 8 completions (+ the eval's)
    assert [len(c) for c in llm.generate_calls if len(c) == 32] == [32, 32]
    assert result["off_policy"] is True and result["config"]["optimizer_steps_per_record"] == 4
    assert len(result["steps"]) == 1 and result["steps"][0]["optimizer_steps"] == 4
    assert result["staleness_mean"] == pytest.approx(1.5)  # completions 0, 1, 2 and 3 optimizer steps old
    assert result["completions_per_s_per_gpu"] == pytest.approx(32 / result["steps"][0]["time/step"], rel=1e-6)
