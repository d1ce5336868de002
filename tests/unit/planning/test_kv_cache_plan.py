"""vLLM's memory sized to the work (`vllm_kv_cache: auto`, kv_cache_plan.py): the arithmetic, what `check` shows, the
reference recipe on an 80 GiB card, and the arguments the trainer gives vLLM (CPU, engine double)."""

import json
import math

import pytest

from open_grpo.cli import main as cli
from open_grpo.planning.kv_cache_plan import (
    GIB,
    KV_MARGIN,
    MIB,
    VLLM_OVERHEAD_GIB,
    engine_kwargs,
    kv_bytes_per_token,
    kv_cache_bytes,
    sized_engine_kwargs,
)
from open_grpo.planning.model_shapes import SHAPES
from tests.support import fake_vllm


def test_kv_bytes_per_token_and_the_batch():
    s = SHAPES["1.5b"]  # 28 layers, 2 KV heads of 128
    assert kv_bytes_per_token(s) == 28 * 2 * 2 * 128 * 2 == 28672
    assert kv_bytes_per_token(s, tp=2) == 28672 // 2
    assert kv_bytes_per_token(s, tp=4) == 28672 // 2  # 2 KV heads: at least one per rank (vLLM replicates)
    need = 16 * 1536 * 28672 * KV_MARGIN
    assert kv_cache_bytes(s, 16, 1536) == math.ceil(need / MIB) * MIB
    assert 0.78 * GIB < kv_cache_bytes(s, 16, 1536) < 0.8 * GIB  # against 0.3 x 141 GiB = 42 GiB as a fraction


def test_engine_arguments_gate_start_up_at_the_planned_share():
    s = SHAPES["1.5b"]
    got = engine_kwargs(s, sequences=16, max_model_len=1536, tp=1, card_bytes=80 * GIB)
    share = 2 * s.num_params + got["kv_cache_memory_bytes"] + VLLM_OVERHEAD_GIB * GIB
    assert got["gpu_memory_utilization"] == pytest.approx(share / (80 * GIB), abs=1e-4)
    assert 0.05 < got["gpu_memory_utilization"] < 0.08
    assert "gpu_memory_utilization" not in engine_kwargs(s, sequences=16, max_model_len=1536, tp=1, card_bytes=None)


def test_sizing_from_trl_arguments_and_its_fallbacks():
    trl = {"model": "random:1.5b", "max_num_seqs": 64, "max_model_len": 1536, "tensor_parallel_size": 1}
    got, why = sized_engine_kwargs(trl, None)
    assert got == {"kv_cache_memory_bytes": kv_cache_bytes(SHAPES["1.5b"], 64, 1536)} and "64 sequences" in why
    assert sized_engine_kwargs({**trl, "max_model_len": None}, None)[0] == {}  # unknown length: TRL's fraction
    assert sized_engine_kwargs({**trl, "kv_cache_memory_bytes": 5}, None)[0] == {}  # the user's value stands
    got, why = sized_engine_kwargs({**trl, "model": "nobody/unknown-model"}, None)
    assert got == {} and "no model shape" in why


def _check_json(capsys, *argv):
    code = cli(["check", "qwen-math-1.5b", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("layout", [["--gpus-per-node", "8"], ["--gpus-per-node", "1", "--accelerate", "single_gpu"]])
def test_reference_recipe_fits_an_80gb_card_with_room(capsys, layout):
    code, data = _check_json(capsys, "--gpu-mem-gib", "80", *layout)
    mem = data["memory_gib"]
    assert code == 0 and data["vllm"]["kv_cache"] == "auto"
    assert mem["total"] < 0.75 * 80, mem  # room to spare: a quarter of the card at least
    # the share is the weights, one batch's KV cache and vLLM's overhead: a few GiB, not 0.3 x 80 = 24
    assert mem["vllm_share"] == pytest.approx(2 * 1.54e9 / GIB + 0.79 + VLLM_OVERHEAD_GIB, abs=0.05)
    assert data["vllm"]["kv_cache_tokens"] >= data["vllm"]["generation_batch_tokens"]


def test_check_books_an_engine_in_its_own_process(capsys):
    _, inp = _check_json(capsys, "--gpus-per-node", "1", "--accelerate", "single_gpu")
    _, own = _check_json(capsys, "--gpus-per-node", "1", "--accelerate", "single_gpu",
                         "--vllm_engine_process", "own_process")  # fmt: skip
    assert own["vllm"]["engine_process"] == "own_process" and inp["vllm"]["engine_process"] == "in_process"
    assert own["memory_gib"]["weight_staging"] == 1.0 and own["memory_gib"]["engine_process_overhead"] > 0
    assert "weight_staging" not in inp["memory_gib"]


@pytest.mark.slow
def test_trainer_sizes_the_engine_it_builds(monkeypatch, tmp_path):
    from tests.unit.engine.test_folded_logprobs import make_trainer

    fake = fake_vllm.install(monkeypatch)
    make_trainer(tmp_path, fold=True, options={"vllm_kv_cache": "auto", "max_prompt_tokens": 24})
    kw = fake.instances[-1].kwargs
    from open_grpo.planning.model_shapes import find_shape

    shape, _ = find_shape(kw["model"])
    assert kw["max_model_len"] == 24 + 8 and kw["max_num_seqs"] == 4  # TRL's: the batch; the trainer's length cap
    assert kw["kv_cache_memory_bytes"] == kv_cache_bytes(shape, 4, 32)
    assert kw["gpu_memory_utilization"] == 0.3  # GRPOConfig's, untouched without a card to size against (CPU)
