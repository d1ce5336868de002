"""`open-grpo check`: layout, batch arithmetic and memory plan, with every problem listed."""

import json

import pytest

from open_grpo.cli import main as cli
from open_grpo.planning.preflight import model_facts, plan
from open_grpo.recipe import load_recipe


@pytest.fixture(scope="module")
def seed():
    return load_recipe("qwen-math-1.5b")


def _plan(recipe, gpus=8, nodes=1, mem=80, zero=3, **changes):
    t = recipe.training
    saved = {k: getattr(t, k) for k in changes}
    for k, v in changes.items():
        setattr(t, k, v)
    try:
        return plan(t, recipe.training.max_prompt_tokens, model_facts(recipe.model.model_name_or_path),
                    gpus_per_node=gpus, nodes=nodes, gpu_mem_gib=mem, zero_stage=zero)  # fmt: skip
    finally:
        for k, v in saved.items():
            setattr(t, k, v)


def test_seed_plan_ok(seed):
    p = _plan(seed)
    assert not p.errors
    text = p.render()
    assert "world size 8" in text and "128 completions = 16 prompts x 8 generations" in text


def test_param_count_matches_qwen25_15b():
    assert model_facts("Qwen/Qwen2.5-Math-1.5B").num_params == pytest.approx(1.54e9, rel=0.01)
    assert model_facts("Qwen/Qwen2.5-Math-7B").num_params == pytest.approx(7.62e9, rel=0.01)


def test_tp_groups_consecutive(seed):
    text = _plan(seed, vllm_tensor_parallel_size=2).render()
    assert "[0, 1], [2, 3], [4, 5], [6, 7]" in text


def test_world_not_multiple_of_tp(seed):
    assert any("not a multiple" in e for e in _plan(seed, gpus=6, vllm_tensor_parallel_size=4).errors)


def test_tp_group_spanning_nodes(seed):
    errors = _plan(seed, gpus=2, nodes=2, vllm_tensor_parallel_size=4).errors
    assert any("span" in e for e in errors)


def test_heads_must_divide(seed):
    assert any("attention heads" in e for e in _plan(seed, vllm_tensor_parallel_size=8).errors)


def test_max_model_length_too_small(seed):
    assert any("vllm_max_model_length 1024" in e for e in _plan(seed, vllm_max_model_length=1024).errors)


def test_kv_cache_too_small(seed):
    assert any("KV cache" in e for e in _plan(seed, vllm_gpu_memory_utilization=0.04).errors)


def test_over_memory(seed):
    p = _plan(seed, mem=40, vllm_gpu_memory_utilization=0.9)
    assert any("of the 40 GiB card" in e and "memory_check: warn" in e for e in p.errors)


def test_all_problems_listed_together(seed):
    p = _plan(seed, gpus=6, vllm_tensor_parallel_size=4, vllm_max_model_length=100)
    assert len(p.errors) >= 2


def test_warnings(seed):
    assert any("TP 2 on a model that fits" in w for w in _plan(seed, vllm_tensor_parallel_size=2).warnings)
    assert any("ZeRO-3" in w for w in _plan(seed).warnings)
    assert not any("ZeRO-3" in w for w in _plan(seed, zero=2).warnings)


def test_cli_exit_codes(capsys):
    assert cli(["check", "qwen-math-1.5b"]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli(["check", "qwen-math-1.5b", "--gpus-per-node", "6", "--vllm_tensor_parallel_size", "4"]) == 1
    out = capsys.readouterr().out
    assert "ERROR: world size 6 is not a multiple" in out


def _check(capsys, *argv):
    code = cli(["check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ models outside the built-in table (#14 row 1)


def test_model_it_cannot_see_is_checked_without_a_memory_plan(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--gpus-per-node", "8", "--model_name_or_path",
                          "Qwen/Qwen2.5-0.5B-Instruct")  # fmt: skip
    assert code == 0, out
    assert "world size 8" in out and "128 completions = 16 prompts x 8 generations" in out  # layout and batch ran
    assert "memory: plan skipped" in out and "not in the local hub cache" in out
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--gpus-per-node", "3", "--model_name_or_path",
                          "Qwen/Qwen2.5-0.5B-Instruct", "--vllm_tensor_parallel_size", "2")  # fmt: skip
    assert code == 1 and "not a multiple of vllm_tensor_parallel_size 2" in out  # still checked


def _hub_cache(root, repo_id, config):
    """A local hub cache holding `config.json` of `repo_id` (huggingface_hub's layout)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(config))


QWEN25_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
              "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True}  # fmt: skip


def test_model_from_the_local_hub_cache(capsys, monkeypatch, tmp_path):
    _hub_cache(tmp_path, "Qwen/Qwen2.5-0.5B-Instruct", QWEN25_05B)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--model_name_or_path", "Qwen/Qwen2.5-0.5B-Instruct")
    assert code == 0, out
    assert "model 0.49 B params, shape from config.json in the local hub cache" in out


def test_local_config_missing_keys_is_a_recipe_error(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 896, "num_attention_heads": 14}))
    code, out, err = _check(capsys, "qwen-math-1.5b", "--model_name_or_path", str(tmp_path))
    assert code == 2 and not out
    assert "config.json lacks num_hidden_layers, intermediate_size, vocab_size" in err


def test_one_table_of_shapes():
    import inspect

    from open_grpo.data import tiny_model as tiny
    from open_grpo.planning import preflight
    from open_grpo.planning.model_shapes import HUB_MODELS, SHAPES

    assert model_facts("random:1.5b") is SHAPES["1.5b"] and model_facts("Qwen/Qwen2.5-Math-7B") is SHAPES["7b"]
    assert {"Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B"} <= set(HUB_MODELS)
    assert SHAPES["tiny"].vocab_size == len(tiny.qwen_tokenizer())  # the tiny model: one row per token id
    for module in (preflight, tiny):  # shapes and vocabulary sizes live in model_shapes.py only
        source = inspect.getsource(module)
        assert "151936" not in source and "152064" not in source and "hidden_size=" not in source


# ------------------------------------------- batch arithmetic at the target world (#14 row 2): recipe errors, exit 2


def test_batch_judged_for_the_target_world_size(capsys):
    code, out, err = _check(capsys, "qwen-math-1.5b", "--gpus-per-node", "4", "--per_device_train_batch_size", "2")
    assert code == 0, out + err  # 2 x 4 GPUs = 8 completions: one group of 8
    assert "8 completions = 1 prompts x 8 generations" in out
    code, out, err = _check(capsys, "qwen-math-1.5b", "--gpus-per-node", "3", "--per_device_train_batch_size", "2")
    assert code == 2 and not out
    assert ("per_device_train_batch_size 2 x world size 3 x steps_per_generation 1 = 6 completions must be divisible "
            "by 'num_generations' 8 (whole prompt groups): use per_device_train_batch_size 8") in err  # fmt: skip


def test_generation_batch_size_judged_for_the_target_world_size(capsys):
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--generation_batch_size", "256")
    assert code == 0, out  # 16 x 8 GPUs = 128: every 2 steps
    assert "generation batch: 256 completions (every 2 step(s))" in out
    code, _, err = _check(capsys, "qwen-math-1.5b", "--generation_batch_size", "200")
    assert code == 2 and "'generation_batch_size' 200 is not a multiple of the global batch" in err


# ------------------------------------------------------------------------ values no plan can use (#14 row 13)


@pytest.mark.parametrize(
    "override,key",
    [(["--per_device_train_batch_size", "0"], "per_device_train_batch_size"),
     (["--per_device_train_batch_size", "-2"], "per_device_train_batch_size"),
     (["--max_completion_length", "0"], "max_completion_length"),
     (["--num_generations", "0"], "num_generations"),
     (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps"),
     (["--vllm_tensor_parallel_size", "0"], "vllm_tensor_parallel_size"),
     (["--vllm_gpu_memory_utilization", "0"], "vllm_gpu_memory_utilization")],
)  # fmt: skip
def test_counts_below_one_are_recipe_errors(capsys, override, key):
    code, out, err = _check(capsys, "qwen-math-1.5b", *override)
    assert code == 2 and not out and "OK" not in out
    assert f"'{key}' must be" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--gpus-per-node", "--nodes"])
def test_layout_flags_below_one_are_usage_errors(capsys, flag):
    code, out, err = _check(capsys, "qwen-math-1.5b", flag, "0")
    assert code == 2 and f"{flag} must be at least 1, got 0" in err


# ----------------------------------------------------------------------------------- --json and memory_check


def test_json_is_one_object_with_the_plan(capsys):
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--json")
    data = json.loads(out)  # the whole of stdout: exactly one JSON object
    assert code == 0 and data["errors"] == [] and data["ok"] is True
    assert any("ZeRO-3" in w for w in data["warnings"])  # warnings inside it
    assert data["layout"]["world_size"] == 8 and data["batch"]["completions_per_step"] == 128
    mem = data["memory_gib"]
    terms = {k: v for k, v in mem.items() if k not in ("total", "card")}
    assert {"policy_weights", "gradients", "optimizer_state", "activations", "lm_head", "per_process_overhead",
            "vllm_share"} <= set(terms)  # fmt: skip
    assert mem["total"] == pytest.approx(sum(terms.values()), abs=0.05)
    # vllm_kv_cache: auto (the default): vLLM's weights + one generation batch's KV cache + overhead, not 0.3 x 80 GiB
    assert data["vllm"]["kv_cache"] == "auto" and 4 < mem["vllm_share"] < 6
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--json", "--vllm_kv_cache", "fraction")
    assert json.loads(out)["memory_gib"]["vllm_share"] == 24.0  # TRL's: vllm_gpu_memory_utilization x the card
    code, out, _ = _check(
        capsys, "qwen-math-1.5b", "--json", "--gpus-per-node", "6", "--vllm_tensor_parallel_size", "4"
    )
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and "world size 6 is not a multiple" in data["errors"][0]
    code, out, _ = _check(capsys, "qwen-math-1.5b", "--json", "--num_generations", "0")
    assert code == 2 and "'num_generations' must be at least 2" in json.loads(out)["errors"][0]


def test_memory_check_warn_accepts_an_over_budget_plan(capsys):
    over = ["--gpu-mem-gib", "40", "--vllm_gpu_memory_utilization", "0.9", "--vllm_kv_cache", "fraction"]
    code, out, _ = _check(capsys, "qwen-math-1.5b", *over)
    assert code == 1 and "ERROR: the plan needs" in out
    code, out, _ = _check(capsys, "qwen-math-1.5b", *over, "--memory_check", "warn")
    assert code == 0 and "WARNING: the plan needs" in out
    code, _, err = _check(capsys, "qwen-math-1.5b", "--memory_check", "maybe")
    assert code == 2 and "'memory_check' must be one of error, warn" in err


def test_seven_b_at_4096_tokens_fits_a_80gb_card(capsys):
    code, out, _ = _check(capsys, "qwen-math-7b", "--nodes", "2", "--gpus-per-node", "8", "--gpu-mem-gib", "79.6",
                          "--max_completion_length", "4096", "--json")  # fmt: skip
    mem = json.loads(out)["memory_gib"]
    assert code == 0 and "logits" not in mem and mem["total"] < 79.6
    assert mem["lm_head"] < 5  # the fused LM head's working set, not fp32 logits of every token (41.8 GiB)


def test_card_memory_default_is_said(capsys, monkeypatch):
    monkeypatch.setattr("open_grpo.planning.gpus.visible_gpus", lambda: [])
    code, out, _ = _check(capsys, "qwen-math-1.5b")
    assert "card memory 80 GiB: the default: no GPU visible here" in out


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch, tmp_path):
    from open_grpo.planning.gpus import visible_gpus

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/bash\nfor i in 0 1 2 3; do echo 'NVIDIA H200, 143771'; done\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert len(visible_gpus()) == 4 and visible_gpus()[0] == ("NVIDIA H200", pytest.approx(140.4, abs=0.1))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert len(visible_gpus()) == 2


# ---------------------------------------------------------------- TP > 1 on several nodes: the fused all-reduce


def test_trtllm_across_nodes_is_a_preflight_error(capsys):
    args = ["qwen-math-7b", "--nodes", "2", "--vllm_tensor_parallel_size", "2", "--vllm_allreduce_fusion", "trtllm"]
    code, out, _ = _check(capsys, *args)
    assert code == 1 and "trtllm is FlashInfer's single-node backend" in out
    tp2 = ["--vllm_tensor_parallel_size", "2"]
    code, out, _ = _check(capsys, "qwen-math-7b", "--nodes", "1", *tp2, "--vllm_allreduce_fusion", "trtllm")
    assert code == 0, out
    code, out, _ = _check(capsys, "qwen-math-7b", "--nodes", "2", *tp2)
    assert code == 0 and "fused all-reduce is turned off (auto)" in out
