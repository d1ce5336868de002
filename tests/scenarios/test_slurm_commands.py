"""slurm/train.sbatch without a cluster: stub srun/scontrol/accelerate/nvidia-smi record the exact per-node commands
and stand in for a node's GPUs."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

SBATCH = ROOT / "slurm" / "train.sbatch"

STUB_SRUN = """#!/bin/bash
echo "srun $*" >> "$RECORD"
cmd="${@: -1}"
for ((i = 0; i < SLURM_JOB_NUM_NODES; i++)); do SLURM_NODEID=$i bash -c "$cmd"; done
"""
STUB_SCONTROL = """#!/bin/bash
if [ "$1 $2" = "show hostnames" ]; then for ((i = 1; i <= SLURM_JOB_NUM_NODES; i++)); do printf 'gpu%02d\\n' $i; done
else echo "scontrol $*" >> "$RECORD"; fi
"""
STUB_ACCELERATE = """#!/bin/bash
echo "node $SLURM_NODEID: accelerate $*" >> "$RECORD"
"""
# the node's GPUs: $STUB_GPUS cards of $STUB_GPU_MIB MiB
STUB_NVIDIA_SMI = """#!/bin/bash
for ((i = 0; i < ${STUB_GPUS:-8}; i++)); do echo "NVIDIA H100 80GB HBM3, ${STUB_GPU_MIB:-81559}"; done
"""


@pytest.fixture
def fake_slurm(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    stubs_ = (("srun", STUB_SRUN), ("scontrol", STUB_SCONTROL), ("accelerate", STUB_ACCELERATE),
              ("nvidia-smi", STUB_NVIDIA_SMI))  # fmt: skip
    for name, body in stubs_:
        (stubs / name).write_text(body)
        (stubs / name).chmod(0o755)
    record = tmp_path / "record.txt"

    def run(nodes, *args, **env):
        record.write_text("")
        environ = {**os.environ, "PATH": f"{stubs}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
                   "RECORD": str(record), "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_JOB_NODELIST": f"gpu[01-{nodes:02d}]",
                   "SLURM_JOB_ID": "777", "SLURM_GPUS_ON_NODE": "8", **env}  # fmt: skip
        environ = {k: v for k, v in environ.items() if v is not None}  # None: unset
        environ.pop("CUDA_VISIBLE_DEVICES", None)
        done = subprocess.run(["bash", str(SBATCH), *args], cwd=tmp_path, env=environ, capture_output=True, text=True)
        return done, record.read_text().splitlines()

    return run


@pytest.mark.parametrize("nodes,tp", [(2, 2), (4, 4)])
def test_per_node_commands(fake_slurm, nodes, tp):
    done, lines = fake_slurm(nodes, "qwen-math-1.5b", str(tp), "--", "--max_steps", "5")
    assert done.returncode == 0, done.stderr
    srun = [ln for ln in lines if ln.startswith("srun")]
    assert len(srun) == 1 and f"--nodes={nodes} --ntasks={nodes} --ntasks-per-node=1" in srun[0]
    # one failing node ends all; the others get 60 s after the first exits; the task gets the node's CPUs, unpinned
    assert all(f in srun[0] for f in ("--kill-on-bad-exit=1", "--wait=60", "--whole", "--cpu-bind=none"))
    launches = [ln for ln in lines if ln.startswith("node ")]
    assert len(launches) == nodes
    recipe = ROOT / "recipes" / "qwen-math-1.5b.yaml"
    for rank, line in enumerate(launches):
        assert line == (
            f"node {rank}: accelerate launch --config_file {ROOT / 'accelerate_configs' / 'zero3.yaml'} --num_machines {nodes} "
            f"--num_processes {8 * nodes} --machine_rank {rank} --main_process_ip gpu01 --main_process_port 20777 "
            "--deepspeed_multinode_launcher standard --rdzv_backend static --same_network "
            f"-m open_grpo.train --config {recipe} --vllm_tensor_parallel_size {tp} --max_steps 5"
        )


def test_environment_form_and_zero2(fake_slurm):
    done, lines = fake_slurm(2, RECIPE="qwen-math-7b", TP="2", ACCELERATE="zero2")
    assert done.returncode == 0, done.stderr
    launches = [ln for ln in lines if ln.startswith("node ")]
    assert all("accelerate_configs/zero2.yaml" in ln and "--vllm_tensor_parallel_size 2" in ln for ln in launches)
    assert "qwen-math-7b.yaml" in launches[0]


def test_bad_tp_stops_before_launch(fake_slurm):
    done, lines = fake_slurm(2, "qwen-math-1.5b", "3")
    assert done.returncode == 1
    assert "not a multiple of vllm_tensor_parallel_size 3" in done.stderr and "preflight failed" in done.stderr
    assert not any(ln.startswith(("srun", "node ")) for ln in lines)


def test_preempted_marker_requeues(fake_slurm, tmp_path):
    # a trainer that saved its stop checkpoint writes <output_dir>/PREEMPTED; accelerate itself exits 1
    (tmp_path / "bin" / "accelerate").write_text(
        "#!/bin/bash\nmkdir -p outputs/qwen-math-1.5b; echo 12 > outputs/qwen-math-1.5b/PREEMPTED; exit 1\n"
    )
    done, lines = fake_slurm(1, "qwen-math-1.5b")
    assert done.returncode == 0, done.stderr
    assert "scontrol requeue 777" in lines and "step 12 saved" in done.stdout
    assert not (tmp_path / "outputs" / "qwen-math-1.5b" / "PREEMPTED").exists()


def test_failure_is_not_requeued(fake_slurm, tmp_path):
    (tmp_path / "bin" / "accelerate").write_text("#!/bin/bash\nexit 3\n")
    done, lines = fake_slurm(1, "qwen-math-1.5b")
    assert done.returncode == 3 and not any("requeue" in ln for ln in lines)


def test_usage_without_recipe(fake_slurm):
    done, _ = fake_slurm(1)
    assert done.returncode == 2 and "usage: sbatch" in done.stderr


def test_shell_checks():
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is not installed (.ci/run installs it)")
        pytest.skip("shellcheck not installed")
    out = subprocess.run(["shellcheck", str(SBATCH)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_port_is_below_the_ephemeral_range_and_follows_the_job_id():
    from open_grpo.planning.launch import PORTS_IN_USE_ELSEWHERE, main_port

    ports = [main_port(job) for job in range(0, 200_000, 7)]
    assert all(20000 <= p < 29000 and p not in PORTS_IN_USE_ELSEWHERE for p in ports)
    assert main_port(777) == 20777 and main_port(778) == 20778  # neighbouring jobs on one node differ


def test_gpus_per_node_from_the_environment_must_agree_with_slurm(fake_slurm):
    done, lines = fake_slurm(2, "qwen-math-1.5b", GPUS_PER_NODE="4")  # left over in the submitting shell
    assert done.returncode == 2 and not lines
    assert "GPUS_PER_NODE=4 in the environment, but SLURM gave this job 8" in done.stderr
    done, lines = fake_slurm(1, "qwen-math-1.5b", GPUS_PER_NODE="8")  # agrees: fine
    assert done.returncode == 0, done.stderr


def test_node_gpu_count_must_match_the_layout(fake_slurm):
    done, lines = fake_slurm(2, "qwen-math-1.5b", STUB_GPUS="4")  # SLURM says 8, the node shows 4
    assert done.returncode == 1 and "preflight failed" in done.stderr
    assert "asks for 8 GPUs per node but this node has 4 visible" in done.stderr
    assert not any(ln.startswith(("srun", "node ")) for ln in lines)


def test_no_gpu_in_a_gpu_job_stops_with_the_reason(fake_slurm):
    done, lines = fake_slurm(1, "qwen-math-1.5b", STUB_GPUS="0", SLURM_GPUS_ON_NODE=None)
    assert done.returncode == 1 and "no GPU is visible on this node" in done.stderr
    assert not lines


def test_gpus_and_memory_come_from_the_node_without_slurm_counts(fake_slurm):
    # neither SLURM nor the environment says how many GPUs: the node's own (4 cards of 40 GiB) are planned for
    done, lines = fake_slurm(1, "qwen-math-1.5b", STUB_GPUS="4", STUB_GPU_MIB="40960", SLURM_GPUS_ON_NODE=None)
    assert done.returncode == 0, done.stderr
    (launch,) = [ln for ln in lines if ln.startswith("node ")]
    assert "--num_processes 4 " in launch


def test_setup_file_sourced_without_set_u(fake_slurm, tmp_path):
    setup = tmp_path / "setup.sh"
    setup.write_text('echo "module system reads $SOME_UNSET_VARIABLE"\nexport SETUP_RAN=1\n')
    done, lines = fake_slurm(1, "qwen-math-1.5b", OPEN_GRPO_SLURM_SETUP=str(setup))
    assert done.returncode == 0, done.stderr
    assert "module system reads" in done.stdout


def test_unknown_model_launches_with_the_memory_plan_skipped(fake_slurm, tmp_path):
    recipe = ROOT / "recipes" / "qwen-math-1.5b.yaml"
    done, lines = fake_slurm(1, str(recipe), "--", "--model_name_or_path", "Qwen/Qwen2.5-0.5B-Instruct",
                             HF_HUB_CACHE=str(tmp_path / "empty-cache"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "memory plan skipped" in done.stderr and "preflight failed" not in done.stderr
    assert any(ln.startswith("node 0: accelerate launch") for ln in lines)


def test_requeued_job_continues_the_run_it_started(fake_slurm):
    """`resume: never` (or weights) starts a run once: the requeued job passes `--resume auto`."""
    done, lines = fake_slurm(1, "qwen-math-1.5b", "--", "--resume", "never", SLURM_RESTART_COUNT="1")
    assert done.returncode == 0, done.stderr
    launches = [ln for ln in lines if ln.startswith("node ")]
    assert launches and all(ln.endswith("--resume never --resume auto") for ln in launches)
    done, lines = fake_slurm(1, "qwen-math-1.5b", "--", "--resume", "never")  # the first start keeps it
    assert all(ln.endswith("--resume never") for ln in lines if ln.startswith("node "))


@pytest.mark.parametrize("signum,requeued", [(signal.SIGUSR1, True), (signal.SIGTERM, False)])
def test_stop_signals_reach_the_ranks_and_only_usr1_requeues(fake_slurm, tmp_path, signum, requeued):
    """The trap creates the stop file the ranks watch; after a TERM (scancel, preemption) the job is not requeued."""
    (tmp_path / "bin" / "accelerate").write_text(
        '#!/bin/bash\necho "node $SLURM_NODEID: accelerate $*" >> "$RECORD"\n'
        'for _ in $(seq 600); do [ -f "$OPEN_GRPO_STOP_FILE" ] && break; sleep 0.1; done\n'
        'echo 7 > "$(dirname "$OPEN_GRPO_STOP_FILE")/PREEMPTED"; exit 1\n'
    )
    record = tmp_path / "record.txt"
    record.write_text("")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "RECORD": str(record), "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "gpu01", "SLURM_JOB_ID": "777",
           "GPUS_PER_NODE": "8"}  # fmt: skip
    proc = subprocess.Popen(["bash", str(SBATCH), "qwen-math-1.5b"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 120
    while "accelerate launch" not in record.read_text() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    lines = record.read_text().splitlines()
    assert ("scontrol requeue 777" in lines) == requeued, stdout + stderr
    assert not (tmp_path / "outputs" / "qwen-math-1.5b" / "PREEMPTED").exists()
    if not requeued:
        assert "TERM: asking every rank" in stdout and "not requeueing" in stdout


def test_the_same_sbatch_submitted_twice_stops_before_starting_its_nodes(fake_slurm, tmp_path):
    """Job 776 runs on this node; job 777, the same submission again, stops before srun, naming it."""
    out = tmp_path / "outputs" / "qwen-math-1.5b"
    out.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    holder = {"pid": other.pid, "host": socket.gethostname(), "slurm_job_id": "776", "slurm_restart": "0"}
    (out / "LOCK").write_text(json.dumps(holder))
    try:
        done, lines = fake_slurm(1, "qwen-math-1.5b")
    finally:
        other.kill()
        other.wait()
    assert done.returncode == 2 and "preflight failed" in done.stderr
    assert f"pid {other.pid}" in done.stderr and "SLURM job 776" in done.stderr
    assert not any(ln.startswith(("srun", "node ")) for ln in lines)


@pytest.mark.parametrize("args", [["--max_steps", "5"], ["1", "--max_steps", "5"], ["--", "--max_steps", "5"]])
def test_trainer_overrides_without_the_dashes(fake_slurm, args):
    """`sbatch slurm/train.sbatch RECIPE --max_steps 5`: the first --word starts the trainer's overrides."""
    done, lines = fake_slurm(1, "qwen-math-1.5b", *args)
    assert done.returncode == 0, done.stderr
    (launch,) = [ln for ln in lines if ln.startswith("node ")]
    assert launch.endswith("--vllm_tensor_parallel_size 1 --max_steps 5")
    assert "--main_process_port 0 " in launch  # one node: accelerate picks a free port itself


def test_a_tp_that_is_not_a_number_says_what_to_type(fake_slurm):
    done, lines = fake_slurm(1, "qwen-math-1.5b", "max_steps=5")
    assert done.returncode == 2 and not lines
    assert "TP (the argument after the recipe) must be a whole number" in done.stderr
    assert "usage: sbatch [--nodes=N] slurm/train.sbatch RECIPE [TP] [--] [trainer overrides" in done.stderr
