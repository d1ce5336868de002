"""A plain (non-editable) install works from any directory: the recipes and accelerate configs ship inside the
package, and the commands find them without a checkout."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel and installed into a folder of its own (dependencies from this environment)."""
    wheels, target = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def run(installed, cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(installed), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_installed_package_is_the_one_running(installed, tmp_path):
    done = run(installed, tmp_path, "-c", "import open_grpo; print(open_grpo.__file__)")
    assert done.stdout.startswith(str(installed)), done.stdout + done.stderr


def test_check_and_launch_args_find_shipped_files_from_any_directory(installed, tmp_path):
    done = run(installed, tmp_path, "-m", "open_grpo.cli", "check", "qwen-math-1.5b", "--gpu-mem-gib", "80")
    assert done.returncode == 0, done.stderr
    assert str(installed) in done.stdout and "OK" in done.stdout  # the recipe came from the installed package
    done = run(installed, tmp_path, "-m", "open_grpo.cli", "launch-args", "qwen-math-1.5b", "--nodes", "2")
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=", 1) for line in done.stdout.splitlines())
    config_file = values["OG_LAUNCH"].split("--config_file ")[1].split()[0]
    assert os.path.isabs(config_file) and os.path.isfile(config_file) and config_file.startswith(str(installed))


def test_a_local_folder_wins_over_the_shipped_one(installed, tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text((ROOT / "recipes" / "demo.yaml").read_text())
    done = run(installed, tmp_path, "-m", "open_grpo.cli", "recipes")
    assert done.returncode == 0 and {"mine", "demo", "qwen-math-1.5b"} <= set(done.stdout.split())


@pytest.mark.slow
def test_train_demo_from_any_directory(installed, tmp_path):
    done = run(installed, tmp_path, "-m", "open_grpo.cli", "train", "demo", "--max_steps", "2", "--dataset_size", "32")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "outputs" / "demo" / "metrics.jsonl").is_file()
