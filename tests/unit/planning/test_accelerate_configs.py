"""The shipped accelerate configs: each one loads in accelerate, is known to the planner, and launches as it says;
FSDP2 is planned like ZeRO-3, at `check` time and at start-up (from what `accelerate launch` exports)."""

import json
import shlex

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from open_grpo.cli import main as cli
from open_grpo.planning.preflight import DEEPSPEED_CONFIGS, ZERO_STAGE, launcher_zero_stage
from open_grpo.recipe import shipped

CONFIGS = shipped.names(shipped.ACCELERATE_CONFIGS)


def test_every_shipped_config_is_planned():
    assert set(CONFIGS) == set(ZERO_STAGE)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_in_accelerate(name):
    config = load_config_from_file(str(shipped.accelerate_config(name)))  # unknown keys are errors there
    kind = config.distributed_type.value
    if name in DEEPSPEED_CONFIGS:
        assert kind == "DEEPSPEED" and config.deepspeed_config["zero_stage"] == ZERO_STAGE[name]
    elif name == "fsdp2":
        assert kind == "FSDP" and config.fsdp_config["fsdp_version"] == 2
    else:
        assert kind in ("NO", "MULTI_GPU")


def _launch_env(name: str) -> dict:
    """The environment `accelerate launch --config_file <name>` gives each rank."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    argv = ["--config_file", str(shipped.accelerate_config(name)), "--num_processes", "2", "-m", "open_grpo.train"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    return prepare_multi_gpu_env(args)


def test_fsdp2_launch_is_planned_as_zero3(monkeypatch):
    env = _launch_env("fsdp2")
    assert launcher_zero_stage(env) == 3
    assert launcher_zero_stage({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}) == 2 and launcher_zero_stage({}) == 0
    from accelerate.utils import FullyShardedDataParallelPlugin

    for key, value in env.items():
        if key.startswith("FSDP_"):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"


def test_check_plans_fsdp2_like_zero3(capsys):
    plans = {}
    for name in ("fsdp2", "zero3"):
        argv = ["check", "qwen-math-1.5b", "--accelerate", name, "--gpus-per-node", "8", "--gpu-mem-gib", "80"]
        assert cli([*argv, "--json"]) == 0
        plans[name] = json.loads(capsys.readouterr().out)
    assert plans["fsdp2"]["memory_gib"] == plans["zero3"]["memory_gib"]
    assert "zero3_gathered" in plans["fsdp2"]["memory_gib"] and plans["fsdp2"]["accelerate"] == "fsdp2"


def test_launch_args_for_fsdp2(capsys, monkeypatch):
    for var in ("SLURM_JOB_ID", "GLOO_SOCKET_IFNAME", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("open_grpo.planning.gpus.visible_gpus", lambda: [])
    assert cli(["launch-args", "qwen-math-1.5b", "--nodes", "2", "--accelerate", "fsdp2"]) == 0
    values = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    launch = shlex.split(shlex.split(values["OG_LAUNCH"])[0])  # the assignment, then the command
    assert launch[launch.index("--config_file") + 1].endswith("accelerate_configs/fsdp2.yaml")
    assert "--deepspeed_multinode_launcher" not in launch  # DeepSpeed's flag, for the zero configs only
