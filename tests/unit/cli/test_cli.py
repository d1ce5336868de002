"""The `open-grpo` command: one tree in --help, one exit-code policy, `python -m` forms equal to the console one."""

import json
import subprocess
import sys

import pytest

from open_grpo.cli import COMMANDS, main
from tests.conftest import ROOT


def test_every_subcommand_is_in_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "check", "launch-args", "bench", "rewards", "environments", "tools", "recipes"):
        assert name in out
    assert len(COMMANDS) == 8


def test_python_m_cli_is_the_console_command():
    console = ROOT / ".venv" / "bin" / "open-grpo"
    if not console.exists():
        pytest.skip("no console script in .venv")
    via_m = subprocess.run([sys.executable, "-m", "open_grpo.cli", "--help"], capture_output=True, text=True)
    via_script = subprocess.run([str(console), "--help"], capture_output=True, text=True)
    assert via_m.returncode == via_script.returncode == 0
    assert via_m.stdout.replace("__main__.py", "open-grpo") == via_script.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "no-such-recipe"],
        ["train", "no-such-recipe"],
        ["launch-args", "no-such-recipe", "--nodes", "2"],
        ["check", "demo", "--per_device_train_batch_size", "abc"],
    ],
)
def test_configuration_errors_exit_2_with_the_message_on_stderr(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "open-grpo" in captured.err
    if "no-such-recipe" in argv:
        assert "unknown recipe 'no-such-recipe'" in captured.err and "Available:" in captured.err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    assert main(["bench", "--no-such-flag"]) == 2


def test_a_failed_check_exits_1(capsys):
    # a KV cache of 1% of a 16 GiB card cannot hold one generation batch
    argv = ["qwen-math-1.5b", "--gpu-mem-gib", "16", "--vllm_gpu_memory_utilization", "0.01"]
    assert main(["check", *argv]) == 1
    assert "problem(s)" in capsys.readouterr().out
    assert main(["launch-args", *argv]) == 1
    assert "problem(s)" in capsys.readouterr().err


def test_train_module_without_a_config_value_is_a_usage_error(capsys):
    from open_grpo.train import cli

    assert cli(["--config"]) == 2
    assert cli(["--max_steps", "3"]) == 2
    assert "--config needs a recipe" in capsys.readouterr().err


def test_check_plans_a_gpu_recipe_without_a_bf16_line_on_a_cpu_machine(tmp_path, capsys):
    """GRPOConfig's bf16 defaults to true: planning on a login node without a GPU must not trip over it."""
    recipe = (ROOT / "recipes" / "qwen-math-1.5b.yaml").read_text().replace("bf16: true\n", "")
    assert "bf16" not in recipe
    (tmp_path / "gpu.yaml").write_text(recipe)
    assert main(["check", str(tmp_path / "gpu.yaml"), "--gpu-mem-gib", "80"]) == 0, capsys.readouterr().err


def test_extra_words_and_unknown_configs_are_usage_errors(capsys):
    assert main(["recipes", "stray"]) == 2
    assert main(["rewards", "stray"]) == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err
    assert main(["launch-args", "qwen-math-1.5b", "--nodes", "2", "--accelerate", "zero1"]) == 2
    assert "unknown accelerate config 'zero1'" in capsys.readouterr().err


def test_train_module_takes_config_equals_form(monkeypatch):
    import open_grpo.train as train

    seen = {}
    monkeypatch.setattr(train, "main", lambda recipe, overrides: seen.update(recipe=recipe, overrides=overrides))
    assert train.cli(["--config=demo", "--max_steps", "3"]) == 0
    assert seen == {"recipe": "demo", "overrides": ["--max_steps", "3"]}


def test_check_of_a_cpu_recipe_plans_one_cpu_process(capsys):
    """`use_cpu: true` (the demo) is one process on the CPU, not 8 GPUs under ZeRO-3."""
    assert main(["check", "demo"]) == 0
    out = capsys.readouterr().out
    assert "use_cpu: true: one process on the CPU" in out and "(use_cpu: a CPU run)" in out
    assert "world size 8" not in out and "ZeRO stage 3" not in out and "memory per GPU" not in out
    assert main(["check", "demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layout"]["world_size"] == 1 and data["layout"]["device"] == "cpu" and data["memory_gib"] is None
