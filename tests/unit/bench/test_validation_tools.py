"""The GPU validation drivers' logic, on this machine: job packing on GPUs (open_grpo/bench/gpu_jobs.py) and the sanity check's
recipes, commands and verdict (open_grpo/bench/sanity_check.py). What they run needs a GPU; how they run it does not."""

import json
import time

import pytest

from open_grpo.bench import sanity_check
from open_grpo.bench.gpu_jobs import Job, run_jobs


def test_jobs_get_their_own_gpus_and_wait_for_free_ones(tmp_path):
    jobs = [
        Job("a", 2, "echo $CUDA_VISIBLE_DEVICES {port}; sleep 1"),
        Job("b", 1, "echo $CUDA_VISIBLE_DEVICES; sleep 1"),
        Job("c", 3, "echo $CUDA_VISIBLE_DEVICES"),  # needs every GPU: waits for a and b
        Job("d", 4, "true"),
    ]
    start = time.time()
    status = {s["name"]: s for s in run_jobs(jobs, [0, 1, 2], tmp_path, deadline_s=60, poll_s=0.2)}
    assert status["a"]["gpus"] == [0, 1] and status["b"]["gpus"] == [2]
    assert status["c"]["gpus"] == [0, 1, 2] and all(status[n]["exit"] == 0 for n in "abc")
    assert status["d"]["ended"] == "too many gpus" and status["d"]["exit"] is None
    log_a = (tmp_path / "a.log").read_text().splitlines()
    assert log_a[1].split()[0] == "0,1" and int(log_a[1].split()[1]) > 0  # devices and a port filled in
    assert (tmp_path / "c.log").read_text().splitlines()[1] == "0,1,2"
    assert time.time() - start < 20


def test_a_job_past_its_timeout_or_the_deadline_is_killed_with_its_children(tmp_path):
    jobs = [Job("slow", 1, "sleep 100 & sleep 100", timeout_s=1), Job("late", 1, "sleep 100"),
            Job("never", 2, "true")]  # fmt: skip
    status = {s["name"]: s for s in run_jobs(jobs, [0, 1], tmp_path, deadline_s=3, poll_s=0.2)}
    assert status["slow"]["ended"] == "timeout" and status["slow"]["exit"] != 0
    assert status["late"]["ended"] == "deadline"
    assert status["never"]["ended"] == "deadline" and status["never"]["exit"] is None


def test_sanity_runs_share_the_global_batch_and_differ_only_in_layout(tmp_path):
    names = sanity_check.run_names(["tp1", "tp2", "dp2", "server"], [0, 1])
    assert names[:4] == ["tp1-s0", "tp2-s0", "dp2-s0", "server-s0"]
    jobs, where = sanity_check.sanity_jobs("/models/m", tmp_path, names, steps=30, lr=1e-4, timeout_s=100)
    import yaml

    cfgs = {j.name: yaml.safe_load((tmp_path / f"{j.name}.yaml").read_text()) for j in jobs}
    procs = {"tp1": 1, "tp2": 2, "dp2": 2, "server": 1}
    for name, cfg in cfgs.items():
        layout = name.rsplit("-s", 1)[0]
        assert cfg["per_device_train_batch_size"] * procs[layout] == 32  # the same completions per step
        same = {k: v for k, v in cfg.items() if k not in ("vllm_mode", "vllm_tensor_parallel_size", "seed",
                                                            "output_dir", "per_device_train_batch_size")}  # fmt: skip
        ref = {k: v for k, v in cfgs["tp1-s0"].items() if k in same}
        assert same == ref
    assert cfgs["tp2-s1"]["vllm_tensor_parallel_size"] == 2 and cfgs["server-s0"]["vllm_mode"] == "server"
    assert cfgs["tp1-s1"]["seed"] == 1 and cfgs["tp1-s0"]["dtype"] == "float32"
    assert cfgs["tp1-s0"]["resume"] == "never"  # a second invocation into the same --out trains again
    assert (tmp_path / "prompts.jsonl").read_text().count("\n") == 512
    by = {j.name: j for j in jobs}
    assert by["tp2-s0"].gpus == 2 and by["tp1-s0"].gpus == 1 and by["server-s0"].gpus == 2
    # the commands survive gpu_jobs' port filling, and the server runs on the second GPU, training on the first
    server = by["server-s0"].command.format(port=1, port2=2, port3=3, gpus="0,1")
    # `python3 -m`: an install made with pip --target can lack TRL's `trl` console script
    assert "trl.scripts.vllm_serve --model $MODEL --port 2" in server and "--vllm_group_port 3" in server
    assert "cut -d, -f2) python3 -m trl.scripts.vllm_serve" in server and "cut -d, -f1) accelerate launch" in server
    tp2 = by["tp2-s0"].command.format(port=1, port2=2, port3=3, gpus="0,1")
    assert "--num_processes 2" in tp2 and "ddp.yaml" in tp2 and "--main_process_port 1" in tp2
    assert where["dp2-s1"] == tmp_path / "dp2-s1"


def _result(curves):
    return {"card": "X", "settings": {"layouts": {k: {} for k in curves}, "command": "c"}, "runs": [],
            "curves": curves, "timing": {}}  # fmt: skip


def test_agreement_within_the_seed_spread_and_not_outside_it():
    up = [0.6 + 0.01 * i for i in range(30)]
    curves = {
        "tp1": {"0": up, "1": [x + 0.02 for x in up]},
        "tp2": {"0": [x + 0.01 for x in up], "1": [x + 0.03 for x in up]},
        "server": {"0": [0.6] * 30, "1": [0.61] * 30},  # learns nothing
    }
    verdict = sanity_check.agreement(curves)
    assert verdict["tp1"]["agrees"] and verdict["tp2"]["agrees"]
    assert not verdict["server"]["agrees"] and verdict["server"]["share_within_spread"] < 0.9
    assert verdict["tp1"]["last5_mean"] > verdict["tp1"]["first5_mean"] + 0.2
    assert sanity_check.agreement({"tp2": curves["tp2"]}) == {}  # no reference, no verdict


def test_results_of_two_calls_merge(tmp_path):
    a = _result({"tp1": {"0": [0.6, 0.7]}})
    b = _result({"tp1": {"1": [0.6, 0.8]}, "tp2": {"0": [0.6, 0.7]}})
    merged = sanity_check.merge([a, b])
    assert merged["curves"] == {"tp1": {"0": [0.6, 0.7], "1": [0.6, 0.8]}, "tp2": {"0": [0.6, 0.7]}}
    assert merged["settings"]["commands"] == ["c", "c"]
    # a merged file merges again (a later call adds a layout): every call's command is kept
    again = sanity_check.merge([merged, _result({"server": {"0": [0.6, 0.9]}})])
    assert again["settings"]["commands"] == ["c", "c", "c"] and set(again["curves"]) == {"tp1", "tp2", "server"}
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    pytest.importorskip("matplotlib")
    args = type("A", (), {"json": [str(pa), str(pb)], "out": str(tmp_path / "m.json"), "png": str(tmp_path / "m.png")})
    assert sanity_check.report(args) == 0
    assert (tmp_path / "m.png").stat().st_size > 0 and "agreement" in json.loads((tmp_path / "m.json").read_text())


def test_sanity_recipes_are_valid_recipes(tmp_path):
    from open_grpo.recipe import load_recipe

    names = sanity_check.run_names(["tp1", "tp2", "server"], [0])
    sanity_check.sanity_jobs("random:tiny", tmp_path, names, steps=30, lr=1e-4, timeout_s=100)
    for name in names:
        cfg = load_recipe(str(tmp_path / f"{name}.yaml"))
        assert cfg.training.max_steps == 30 and cfg.script.save_final_model is False
