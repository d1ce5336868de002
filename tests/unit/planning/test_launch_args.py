"""`open-grpo launch-args` on its own: what it assumes outside a job, and the preflight it runs (exit codes, notes)."""

import shlex
import socket

import pytest

from open_grpo.cli import main as cli
from open_grpo.planning.launch import main_port


@pytest.fixture
def outside_a_job(monkeypatch):
    for var in ("SLURM_JOB_ID", "GLOO_SOCKET_IFNAME", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("open_grpo.planning.gpus.visible_gpus", lambda: [])


def _launch_args(capsys, *argv):
    code = cli(["launch-args", *argv])
    out = capsys.readouterr()
    values = dict(line.split("=", 1) for line in out.out.splitlines())
    return code, {k: shlex.split(v)[0] if v else v for k, v in values.items()}, out.err


def test_outside_a_job_the_defaults_are_said(capsys, outside_a_job):
    code, values, err = _launch_args(capsys, "qwen-math-1.5b", "--nodes", "2")
    assert code == 0, err
    assert values["OG_GPUS_PER_NODE"] == "8" and values["OG_WORLD_SIZE"] == "16"
    assert "not in a job: planned for 8 GPUs per node, the default" in err
    assert "card memory 80 GiB: the default: no GPU visible here" in err
    # several nodes, colocated: every rank joins one gloo group, which needs the right interface
    assert "GLOO_SOCKET_IFNAME is not set" in err


def test_memory_check_warn_turns_the_over_budget_error_into_a_warning(capsys, outside_a_job):
    over = ["qwen-math-1.5b", "--gpu-mem-gib", "40", "--", "--vllm_gpu_memory_utilization", "0.9",
            "--vllm_kv_cache", "fraction"]  # fmt: skip
    code, values, err = _launch_args(capsys, *over)
    assert code == 1 and not values and "the plan needs" in err
    code, values, err = _launch_args(capsys, *over, "--memory_check", "warn")
    assert code == 0 and values["OG_LAUNCH"] and "warning: the plan needs" in err


def test_trtllm_across_nodes_is_refused(capsys, outside_a_job):
    code, values, err = _launch_args(capsys, "qwen-math-7b", "--nodes", "2", "--tp", "2", "--",
                                     "--vllm_allreduce_fusion", "trtllm")  # fmt: skip
    assert code == 1 and not values and "trtllm is FlashInfer's single-node backend" in err


@pytest.mark.parametrize("flags", [["--nodes", "0"], ["--gpus-per-node", "0"], ["--tp", "0"]])
def test_layout_flags_below_one_are_usage_errors(capsys, outside_a_job, flags):
    code, values, err = _launch_args(capsys, "qwen-math-1.5b", *flags)
    assert code == 2 and not values and "must be at least 1, got 0" in err


def test_ports_of_jobs_sharing_the_first_node_differ(capsys, outside_a_job):
    """Job ids equal modulo 9000 derive the same port: the second job, started while the first listens there, moves
    on to the next free one. One node: port 0, accelerate picks a free one itself."""
    for job in range(150, 400):  # job 150 (or the next whose derived port is free here) listens on this node
        first_job = socket.socket()
        try:
            first_job.bind(("", main_port(job, nodes=2, main_host="elsewhere")))
            break
        except OSError:
            first_job.close()
    try:
        first_job.listen()
        taken = first_job.getsockname()[1]
        code, values, err = _launch_args(capsys, "qwen-math-1.5b", "--nodes", "2", "--main-host",
                                         socket.gethostname(), "--job-id", str(job + 9000))  # fmt: skip
    finally:
        first_job.close()
    assert code == 0, err
    assert values["OG_MAIN_PORT"] != str(taken) and 20000 <= int(values["OG_MAIN_PORT"]) < 29000
    code, values, err = _launch_args(capsys, "qwen-math-1.5b", "--job-id", str(job))
    assert values["OG_MAIN_PORT"] == "0" and "--main_process_port 0" in values["OG_LAUNCH"]
