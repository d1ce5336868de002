"""The engine core in a process of its own (engine/own_process.py, staging.py, worker_extension.py, recipe/engine_process.py)
on CPU: which settings allow it, the environment its process is built in, the arguments it gets, the staging
buffer's layout, and the whole weight path against the vLLM engine double (its worker running our extension)."""

import pytest
import torch

from open_grpo.engine import own_process, staging, worker_extension
from open_grpo.engine.own_process import engine_environ, environ_changed, own_process_kwargs, physical_gpu
from open_grpo.recipe import engine_process as process_choice
from tests.support import fake_vllm

# --------------------------------------------------------------------------------------------------- the choice


def test_own_process_runs_only_where_it_applies():
    ok = dict(colocate=True, tp=1, sleep_mode=False, quantized=False)
    assert process_choice.resolve("own_process", **ok)[0] == "own_process"
    assert process_choice.resolve("auto", **ok)[0] == "own_process"
    assert process_choice.resolve("in_process", **ok)[0] == "in_process"
    for change, words in (({"tp": 2}, "vllm_tensor_parallel_size 2"), ({"sleep_mode": True}, "sleep"),
                          ({"quantized": True}, "4-/8-bit"), ({"colocate": False}, "colocated engine only")):  # fmt: skip
        with pytest.raises(ValueError, match=words):
            process_choice.resolve("own_process", **{**ok, **change})
        process, why = process_choice.resolve("auto", **{**ok, **change})
        assert process == "in_process" and words in why  # auto falls back, saying why
    with pytest.raises(ValueError, match="must be one of auto, in_process, own_process"):
        process_choice.resolve("sideways", **ok)


def test_recipe_refuses_own_process_with_tp2(write_recipe):
    from open_grpo.errors import RecipeError
    from open_grpo.recipe import load_recipe

    recipe = write_recipe({"use_vllm": True, "vllm_mode": "colocate", "vllm_engine_process": "own_process",
                           "vllm_tensor_parallel_size": 2, "vllm_kv_cache": "maybe"})  # fmt: skip
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe, world_size=2)
    text = str(e.value)
    assert "own_process cannot run here" in text and "vllm_tensor_parallel_size 2 > 1" in text and "in_process" in text
    assert "'vllm_kv_cache'" in text and "'maybe'" in text  # reported together


# -------------------------------------------------------------------------------------- the engine's environment


def test_physical_gpu_follows_cuda_visible_devices():
    assert physical_gpu({}, 3) == "3"
    assert physical_gpu({"CUDA_VISIBLE_DEVICES": "4,5,6"}, 1) == "5"
    assert physical_gpu({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}, 1) == "GPU-bb"
    with pytest.raises(ValueError, match="lists 1 GPU"):
        physical_gpu({"CUDA_VISIBLE_DEVICES": "2"}, 1)


def test_launcher_variables_kept_from_the_engine_and_restored():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_PORT": "29500", "MASTER_ADDR": "n1",
           "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RUN_ID": "x", "CUDA_VISIBLE_DEVICES": "0,1",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "PATH": "/bin"}  # fmt: skip
    before = dict(env)
    changes = engine_environ(env, "1")
    with environ_changed(changes, env):
        assert env == {"CUDA_VISIBLE_DEVICES": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "1", "PATH": "/bin",
                       "VLLM_WORKER_MULTIPROC_METHOD": "spawn"}  # fmt: skip
    assert env == before  # every variable back, the added ones gone
    with pytest.raises(RuntimeError), environ_changed(changes, env):
        raise RuntimeError("engine construction failed")
    assert env == before


def test_trl_arguments_made_own_process():
    trl = {"model": "m", "tensor_parallel_size": 1, "distributed_executor_backend": "external_launcher", "seed": 0,
           "max_num_batched_tokens": 4096, "logprobs_mode": "processed_logprobs"}  # fmt: skip
    got = own_process_kwargs(trl)
    assert got == {**trl, "distributed_executor_backend": "uni", "worker_extension_cls": own_process.WORKER_EXTENSION}
    assert own_process.WORKER_EXTENSION.endswith("worker_extension.StagedWeightLoader")
    with pytest.raises(ValueError, match="tensor_parallel_size 1, got 2"):
        own_process_kwargs({**trl, "tensor_parallel_size": 2})


def test_extension_methods_do_not_collide_with_a_worker():
    # vLLM 0.26 refuses an extension whose attributes the worker class already has: ours all carry a prefix
    names = [n for n in dir(worker_extension.StagedWeightLoader) if not n.startswith("__")]
    assert names and all(n.startswith("open_grpo_") for n in names)


# ---------------------------------------------------------------------------------------------- staging layout


def test_buffer_is_one_chunk_or_the_largest_tensor_at_most_the_model():
    gib = 2**30
    sizes = [467 * 2**20, 3 * 2**20, 55 * 2**20] * 20  # an embedding-sized tensor among layer-sized ones
    assert staging.buffer_bytes(sizes, gib) == gib
    assert staging.buffer_bytes(sizes, 2**20) == staging.aligned(467 * 2**20)  # the largest tensor
    assert staging.buffer_bytes([1000, 10], gib) == staging.aligned(1000) + staging.aligned(10)  # the whole model


def test_chunks_hold_aligned_tensors_in_order():
    tensors = [("a", (10, 3), 60), ("b", (7,), 14), ("c", (100,), 400), ("d", (64,), 256)]
    chunks = staging.plan_chunks(tensors, capacity=512)
    assert [[s.name for s in c] for c in chunks] == [["a", "b"], ["c"], ["d"]]
    for chunk in chunks:
        assert all(s.offset % staging.ALIGN_BYTES == 0 for s in chunk)
        assert all(s.offset + s.nbytes <= 512 for s in chunk)
    assert chunks[0][1].offset == 256 and chunks[0][1].shape == (7,)
    with pytest.raises(ValueError, match="raise vllm_sync_chunk_mib"):
        staging.plan_chunks([("big", (1000,), 2000)], capacity=512)
    names, shapes, offsets, dtype = staging.rpc_args(chunks[0], "bfloat16")
    assert (names, shapes, offsets, dtype) == (["a", "b"], [[10, 3], [7]], [0, 256], "bfloat16")


# -------------------------------------------------------------- the weight path, through the trainer (CPU double)


@pytest.mark.slow
def test_weights_reach_an_engine_in_its_own_process(monkeypatch, tmp_path, shared_by_reference):
    from tests.unit.engine.test_folded_logprobs import make_trainer

    fake = fake_vllm.install(monkeypatch)
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    options = {"vllm_engine_process": "own_process", "vllm_sync_chunk_mib": 1,
               "vllm_engine_kwargs": {"dtype": "bfloat16"}}  # fmt: skip
    trainer = make_trainer(tmp_path, fold=True, options=options)
    llm = fake.instances[-1]
    # built as an engine in its own process: uni executor, our extension, no launcher variables, multiprocessing on
    assert llm.kwargs["distributed_executor_backend"] == "uni"
    assert llm.kwargs["worker_extension_cls"] == own_process.WORKER_EXTENSION
    assert (
        llm.env["RANK"] is None and llm.env["MASTER_PORT"] is None and llm.env["TORCHELASTIC_USE_AGENT_STORE"] is None
    )
    assert llm.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"
    import os

    assert os.environ["RANK"] == "0" and os.environ["TORCHELASTIC_USE_AGENT_STORE"] == "True"  # restored after
    assert llm.calls == ["rpc:open_grpo_attach"]  # the buffer is shared once, at start-up

    trainer.vllm_generation.sync_weights()
    params = dict(trainer.model.named_parameters())
    assert set(llm.weights) == set(params)
    for name, p in params.items():  # every weight, cast to the engine's dtype by the copy into the buffer
        assert llm.weights[name].dtype == torch.bfloat16
        torch.testing.assert_close(llm.weights[name], p.detach().to(torch.bfloat16), rtol=0, atol=0)
    sizes = [p.numel() * 2 for p in params.values()]
    expected = staging.plan_chunks([(n, tuple(p.shape), p.numel() * 2) for n, p in params.items()],
                                   staging.buffer_bytes(sizes, 2**20))  # fmt: skip
    assert llm.load_calls == len(expected) > 1
    assert llm.calls[-1] == "reset_prefix_cache" and llm.calls.count("rpc:open_grpo_load") == len(expected)
    assert trainer.engine.staged_sync.last["chunks"] == len(expected)
