"""Two nodes simulated on this machine: two torchrun agents (`--nnodes 2 --node_rank 0/1`, static rendezvous on
localhost, gloo), each starting 2 CPU ranks that train colocated against the vLLM engine double with TP=2 (world
4). Checked: TP groups stay inside a node, one seed per group, the fused all-reduce is off for a world spanning
nodes, a stop file seen on one node stops both at the same step with one complete checkpoint, and the resumed run
continues from it to the last step."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT

NODES, RANKS_PER_NODE, STOP_AT, STEPS = 2, 2, 1, 3


def _free_port() -> int:
    with socket.socket() as sock:  # a fixed port may be held by another run on this machine
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_nodes(recipe, logs, tmp_path, stop_node=None):
    """Start both agents, wait for both; (return codes, outputs). The stop file of node `stop_node` appears after
    step STOP_AT; each node has its own stop-file path, as nodes without a shared /tmp would."""
    port = _free_port()
    procs = []
    for node in range(NODES):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPEN_GRPO_STOP_FILE": str(tmp_path / f"stop-node{node}")}
        if node == stop_node:
            env["TOUCH_STOP_AT_STEP"] = str(STOP_AT)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES), "--node_rank", str(node),
               "--nproc_per_node", str(RANKS_PER_NODE), "--rdzv_backend", "static", "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(ROOT / "tests" / "support" / "multinode_main.py"), str(recipe), str(logs)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))  # fmt: skip
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=420)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:  # a hung rank: take the whole agent's group down
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for node, output in enumerate(outputs):
        (logs / f"node{node}.log").write_text(output)
    return [p.returncode for p in procs], outputs


def _steps(output_dir):
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "reward" in r]


@pytest.mark.slow
def test_two_nodes_tp2_groups_stop_and_resume(write_recipe, tmp_path):
    recipe = write_recipe(
        {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_tensor_parallel_size": 2,
            "max_steps": STEPS,
            "dataset_size": 32,
            "per_device_train_batch_size": 2,
            "num_generations": 8,
            "max_completion_length": 8,
            "save_strategy": "no",
        }  # fmt: skip
    )
    out = tmp_path / "out"
    first = tmp_path / "first"
    first.mkdir()
    codes, outputs = _run_nodes(recipe, first, tmp_path, stop_node=1)
    assert (out / "PREEMPTED").read_text().strip() == str(STOP_AT), "\n".join(o[-3000:] for o in outputs)
    assert (out / f"checkpoint-{STOP_AT}" / "COMPLETE").is_file()  # one checkpoint, marked complete
    assert _steps(out) == list(range(1, STOP_AT + 1))  # node 0 saw no stop file of its own, and stopped too

    logs = [json.loads((first / f"rank{r}.json").read_text()) for r in range(NODES * RANKS_PER_NODE)]
    assert all(len(log) == STOP_AT for log in logs)  # every rank on both nodes stopped after the same step
    for node in range(NODES):
        r0, r1 = logs[2 * node][0], logs[2 * node + 1][0]  # the TP group of this node: ranks 2n, 2n+1
        group = r0["local"] + r1["local"]
        assert r0["engine_got"] == group and r1["engine_got"] == group  # gathered inside the node, in rank order
        assert r0["returned"] == r0["local"] and r1["returned"] == r1["local"]
        assert r0["engine_kwargs"]["seed"] == r1["engine_kwargs"]["seed"]  # one seed per TP group
        assert r0["engine_kwargs"]["tensor_parallel_size"] == 2
        # vLLM's world spans both nodes: the fused all-reduce is off (no multicast variable is set here)
        assert r0["engine_kwargs"]["compilation_config"] == {"pass_config": {"fuse_allreduce_rms": False}}
    assert logs[0][0]["engine_kwargs"]["seed"] != logs[2][0]["engine_kwargs"]["seed"]  # the groups differ

    (out / "PREEMPTED").unlink()  # what the job script does: it removes the marker and the stop file, and requeues
    (tmp_path / "stop-node1").unlink()
    second = tmp_path / "second"
    second.mkdir()
    codes, outputs = _run_nodes(recipe, second, tmp_path)
    assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "resuming from" in outputs[0] and f"checkpoint-{STOP_AT}" in outputs[0]
    assert _steps(out) == list(range(1, STEPS + 1))  # appended: every step once
    resumed = [json.loads((second / f"rank{r}.json").read_text()) for r in range(NODES * RANKS_PER_NODE)]
    assert all(len(log) == STEPS - STOP_AT for log in resumed)
