"""`python -m open_grpo.bench.engine_probe` and `python -m open_grpo.bench.offpolicy_curve` on CPU: their arguments,
the probe's flow and report with engine doubles, the off-policy run's recipe, curves and verdict."""

import json

import pytest

from open_grpo.bench import engine_probe, offpolicy_curve


class FakeProbeEngine:
    """Completions that depend on the weights it holds; `follows_pushes` False: an engine the weights never reach."""

    def __init__(self, name, weights, follows_pushes=True):
        self.name, self.weights, self.follows_pushes = name, weights, follows_pushes
        self.version, self.build_s = 0, 12.0

    def generate(self, prompts, max_tokens, greedy):
        base = self.version * 7 + (0 if greedy else 1)
        steps = {"engine/steps": max_tokens, "engine/step_ms_median": 2.5, "engine/step_ms_max": 5.0,
                 "engine/slow_steps": 0.0}  # fmt: skip
        completions = [[(p[0] + base + i) % 1000 for i in range(max_tokens)] for p in prompts]
        logprob = -1.0 if self.name == "in_process" else -1.25
        return {"completions": completions, "seconds": 2.0 if self.name == "in_process" else 1.8, "steps": steps,
                "logprobs": [[logprob] * max_tokens for _ in prompts]}  # fmt: skip

    def push(self):
        if self.follows_pushes:
            self.version = self.weights["version"]
        return {"staged": 0.02} if self.name == "own_process" else {"trl_per_parameter": 0.06, "chunked_1gib": 0.03}

    def memory(self):
        return (
            {"engine_process_reserved_gib": 5.1}
            if self.name == "own_process"
            else {"trainer_process_reserved_delta_gib": 5.3}
        )


def _probe(follows=True):
    weights = {"version": 0}
    engines = {"own_process": FakeProbeEngine("own_process", weights, follows),
               "in_process": FakeProbeEngine("in_process", weights)}  # fmt: skip
    args = engine_probe.parse_args(["--out", "x", "--steps", "2", "--tokens", "16", "--prompt-tokens", "8"])
    return engine_probe.run_probe(engines, lambda: weights.update(version=1), args, lambda: 20.0)


def test_probe_arguments():
    args = engine_probe.parse_args(["--out", "d"])
    assert (args.model, args.steps, args.sequences, args.tokens, args.prompts) == ("random:1.5b", 4, 16, 1024, 2)
    for bad in (["--steps", "0"], ["--sequences", "15"]):
        with pytest.raises(SystemExit):
            engine_probe.parse_args(["--out", "d", *bad])
    prompts = engine_probe.make_prompts(2, 8, 5, seed=0)
    assert len(prompts) == 16 and prompts[0] == prompts[7] != prompts[8] and len(prompts[0]) == 5


def test_probe_flow_and_report():
    result = _probe()
    c = result["correctness"]
    assert c["passed"] and c["same_before_push"] and c["same_after_push"] and all(c["changed_by_push"].values())
    assert c["push_seconds"]["own_process"] == {"staged": [0.02] * 3}
    assert c["max_logprob_difference_after_push"] == pytest.approx(0.25)
    assert [len(v) for v in result["calls"].values()] == [2, 2]  # interleaved, after one warm-up each
    own = result["engines"]["own_process"]
    assert own["seconds_median"] == 1.8 and own["ms_per_decode_step_median"] == pytest.approx(1.8e3 / 16)
    assert own["step_max_over_median"] == 2.0 and own["push_s_median"] == {"staged": 0.02}
    assert result["own_over_in_process_seconds"] == pytest.approx(0.9) and result["device_used_gib_end"] == 20.0
    text = engine_probe.table(result)
    assert "correctness PASSED" in text and text.splitlines()[1].startswith("own_process")
    assert "staged 0.020" in text and "engine_process_reserved 5.1" in text
    json.dumps(result)  # probe.json


def test_probe_fails_when_the_weights_do_not_arrive():
    c = _probe(follows=False)["correctness"]
    assert not c["passed"] and not c["same_after_push"] and c["changed_by_push"]["own_process"] is False
    assert c["first_difference_after_push"] == [0, 0]
    assert "correctness FAILED" in engine_probe.table(_probe(follows=False))


def test_offpolicy_run_differs_only_in_generating_ahead(tmp_path):
    args = offpolicy_curve.parse_args(["--out", str(tmp_path), "--seeds", "0,1"])
    assert args.seeds == [0, 1] and args.steps == 50 and args.ahead == 4
    on, off = (offpolicy_curve.run_recipe("m", "d", v, 0, 50, 4, "o") for v in offpolicy_curve.VARIANTS)
    assert {k: v for k, v in off.items() if on.get(k) != v} == {"steps_per_generation": 4,
                                                                 "vllm_importance_sampling_correction": True}  # fmt: skip
    assert on["max_steps"] == off["max_steps"] == 50 and on["per_device_train_batch_size"] == 32
    with pytest.raises(SystemExit):
        offpolicy_curve.parse_args(["--out", "x", "--ahead", "1"])


def test_offpolicy_curves_and_verdict(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": i + 1, "time/step": 0.4, "offpolicy/staleness": i % 4, **({"reward": 0.5} if i % 4 == 0 else {})}
            for i in range(12)] + [{"step": 12, "train_runtime": 9.0}]  # fmt: skip
    metrics.write_text("\n".join(json.dumps(r) for r in rows))
    curve = offpolicy_curve.read_curve(metrics)
    assert len(curve["reward"]) == 12 and curve["staleness"][:4] == [0, 1, 2, 3] and curve["reward"][1] is None
    curves = {"on_policy": {0: {"reward": [0.6] * 50}}, "off_policy": {0: {"reward": [0.57] * 50}}}
    v = offpolicy_curve.verdict(curves)
    assert v["no_worse"] and v["seeds"][0]["difference"] == pytest.approx(-0.03)
    curves["off_policy"][0]["reward"] = [0.5] * 50
    assert not offpolicy_curve.verdict(curves)["no_worse"]
    assert not offpolicy_curve.verdict({"on_policy": {0: {"reward": [0.6]}}, "off_policy": {}})["no_worse"]
    offpolicy_curve.plot(curves, tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.slow
def test_probe_engines_built_by_the_trainers_path(monkeypatch, shared_by_reference):
    """Both probe engines through TRL's VLLMGeneration on the engine double: the arguments TRL gives, the weight
    paths each has, generation by TRL's colocated call."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from open_grpo.data.models import resolve_model
    from open_grpo.engine import own_process, probe_engines
    from tests.support import fake_vllm

    fake = fake_vllm.install(monkeypatch)
    path = resolve_model("random:tiny")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer, accelerator = AutoTokenizer.from_pretrained(path), Accelerator(cpu=True)
    engines = {name: probe_engines.build(name, model, tokenizer, accelerator, max_model_len=48, sequences=4)
               for name in engine_probe.ENGINES}  # fmt: skip
    own, inp = (fake.instances[i].kwargs for i in (0, 1))
    assert own["worker_extension_cls"] == own_process.WORKER_EXTENSION and own["distributed_executor_backend"] == "uni"
    assert inp["distributed_executor_backend"] == "external_launcher"
    for kw in (own, inp):  # TRL's arguments, the KV cache sized to 4 sequences of 48 tokens
        assert kw["max_num_batched_tokens"] == 4 * 48  # the start-up token cap (engine/batching.py)
        assert kw["logprobs_mode"] == "processed_logprobs"
        assert kw["max_num_seqs"] == 4 and kw["max_model_len"] == 48 and kw["kv_cache_memory_bytes"] > 0
    for name, engine in engines.items():
        r = engine.generate([[5, 6, 7]] * 4, 6, greedy=True)
        assert [len(c) for c in r["completions"]] == [6] * 4 and len(r["logprobs"][0]) == 6
        assert fake.instances[ENGINE_INDEX[name]].sampling_params[-1].temperature == 0.0
        assert set(engine.push()) == ({"staged"} if name == "own_process" else {"trl_per_parameter", "chunked_1gib"})
    assert set(fake.instances[0].weights) == {n for n, _ in model.named_parameters()}
    assert "engine_process_reserved_gib" in engines["own_process"].memory()


ENGINE_INDEX = {"own_process": 0, "in_process": 1}  # build order


def test_probe_with_one_engine_times_it_and_says_why_nothing_was_compared():
    weights = {"version": 0}
    args = engine_probe.parse_args(["--out", "x", "--steps", "1", "--tokens", "8", "--prompt-tokens", "4"])
    saved = []
    result = engine_probe.run_probe({"in_process": FakeProbeEngine("in_process", weights)}, lambda: None, args,
                                    save=lambda r: saved.append(dict(r)))  # fmt: skip
    assert "needs both engines" in result["correctness"]["skipped"] and len(saved) == 2
    result["engines"]["own_process"] = {"error": "Traceback ... worker extension failed"}
    text = engine_probe.table(result)
    assert "own_process  Traceback ... worker extension failed" in text and "correctness not checked" in text
