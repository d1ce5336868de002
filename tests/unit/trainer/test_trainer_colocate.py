"""The colocation-aware trainer against a test double of vLLM's engine (CPU): engine kwargs, max model length,
weight sync, prompt slicing and the logged metrics."""

import json

import pytest

from open_grpo.engine.colocated import engine_kwargs_applied
from open_grpo.train import main
from tests.support import fake_vllm


@pytest.mark.slow
def test_colocated_steps_with_engine_double(monkeypatch, write_recipe, tmp_path):
    fake = fake_vllm.install(monkeypatch)
    recipe = write_recipe(
        {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_engine_kwargs": {"max_num_seqs": 4, "enable_prefix_caching": True, "max_num_batched_tokens": 512},
            "max_steps": 2,
            "dataset_size": 32,
        }
    )
    main(str(recipe))
    (llm,) = fake.instances
    kw = llm.kwargs
    assert kw["max_num_seqs"] == 4 and kw["enable_prefix_caching"] is True and kw["max_num_batched_tokens"] == 512
    assert kw["max_model_len"] == 128 + 16  # max_prompt_tokens + max_completion_length, set by the trainer
    assert kw["distributed_executor_backend"] == "external_launcher" and kw["tensor_parallel_size"] == 1
    # on-policy: weights pushed before each step's generation, every parameter by its vLLM name
    assert len(llm.generate_calls) == 2 and "model.embed_tokens.weight" in llm.loaded
    assert all(len(call) == 8 for call in llm.generate_calls)  # one rank: all 8 completions (1 prompt x 8) here
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2
    assert all(r["time/generation"] > 0 and r["time/weight_sync"] > 0 for r in steps)
    assert all(r["completions/mean_length"] == 16 for r in steps)
    assert all(r["offpolicy/staleness"] == 0 for r in steps)  # on-policy: trained on its own step's completions
    assert kw["kv_cache_memory_bytes"] > 0  # vllm_kv_cache: auto, the recipes' default


def test_engine_kwargs_restore_module(monkeypatch):
    fake = fake_vllm.install(monkeypatch)
    import trl.generation.vllm_generation as gen

    with engine_kwargs_applied({"enforce_eager": True}):
        gen.LLM(model="m", max_num_seqs=2)
    assert gen.LLM is fake
    assert fake.instances[-1].kwargs == {"model": "m", "max_num_seqs": 2, "enforce_eager": True}


@pytest.mark.slow
def test_server_mode_with_client_double(monkeypatch, write_recipe, tmp_path):
    client = fake_vllm.install_server(monkeypatch)
    recipe = write_recipe({"use_vllm": True, "vllm_mode": "server", "max_steps": 2, "dataset_size": 32})
    main(str(recipe))
    (server,) = client.instances
    # TRL sends each prompt once with n = num_generations, and pushes the weights before each generation
    assert [c["n"] for c in server.generate_calls] == [8, 8] and all(
        len(c["prompts"]) == 1 for c in server.generate_calls
    )
    assert len(server.synced) == 2 and "model.embed_tokens.weight" in server.synced[0]
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2 and all(r["time/generation"] > 0 and r["time/weight_sync"] > 0 for r in steps)


@pytest.mark.slow
def test_tp2_groups_and_slices_prompts(write_recipe, tmp_path):
    """Two CPU ranks, TP=2: each engine gets the whole group's prompts; each rank gets its own slice back."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    recipe = write_recipe(
        {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_tensor_parallel_size": 2,
            "max_steps": 2,
            "dataset_size": 32,
            "per_device_train_batch_size": 8,
            "num_generations": 8,
        }  # fmt: skip
    )
    import signal
    import socket

    with socket.socket() as sock:  # a free port: a fixed one may be held by another run on this machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(ROOT / "tests" / "support" / "tp_double_main.py"), str(recipe), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}  # a host without multicast
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # a hung rank: take the whole launcher group down, not just torchrun
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-4000:]
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for step in range(2):
        r0, r1 = logs[0][step], logs[1][step]
        group = r0["local"] + r1["local"]
        assert r0["engine_got"] == group and r1["engine_got"] == group  # gathered over the TP group, in rank order
        assert r0["returned"] == r0["local"] and r1["returned"] == r1["local"]  # each rank keeps its own slice
        assert r0["engine_kwargs"]["tensor_parallel_size"] == 2
        assert r0["engine_kwargs"]["seed"] == r1["engine_kwargs"]["seed"]  # one seed per TP group
        # no multicast here: vLLM 0.26's fused all-reduce (mnnvl) would crash, so the trainer turns it off
        assert r0["engine_kwargs"]["compilation_config"] == {"pass_config": {"fuse_allreduce_rms": False}}
