"""Tool-using rollouts through `open_grpo.train` on CPU: the tiny model's generation is scripted (a random model never
calls a tool), TRL's own tool loop runs the calls through the python_exec environment (over a sandbox double) and the
calculator tool, and the tool output's tokens are masked out of the loss."""

import json

import pytest
import torch
import trl

from open_grpo.data.tiny_model import qwen_tokenizer
from open_grpo.errors import RecipeError
from open_grpo.train import main
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer
from tests.support import fake_sandbox, fake_vllm

PYTHON_CALL = '<tool_call>\n{"name": "run_python", "arguments": {"code": "print(6*7)"}}\n</tool_call><|im_end|>'
FAILING_CALL = (
    '<tool_call>\n{"name": "run_python", "arguments": {"code": "raise SystemExit(3)"}}\n</tool_call><|im_end|>'
)
CALCULATOR_CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call><|im_end|>'
UNKNOWN_CALL = '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call><|im_end|>'
# What each of a prompt's 4 completions says first; after a tool result every completion answers AFTER_TOOL.
FIRST_TURNS = [PYTHON_CALL, FAILING_CALL, CALCULATOR_CALL, "forty two, no tools<|im_end|>"]
AFTER_TOOL = "so it is <answer>42</answer><|im_end|>"


def _tools_recipe(write_recipe, tmp_path, **changes):
    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is 6 * 7 (task {i})?", "solution": "42"}) + "\n"
                            for i in range(8)))  # fmt: skip
    return write_recipe({"dataset_name": str(data), "system_prompt": None, "environment": {"name": "python_exec"},
                         "tools": ["calculator"], "max_tool_calling_iterations": 2, "num_generations": 4,
                         "per_device_train_batch_size": 4, "max_completion_length": 96, "max_steps": 2,
                         "log_completions": True, "completions_log_max_per_step": None,
                         "num_completions_to_print": 0, **changes})  # fmt: skip


@pytest.fixture
def scripted_generation(monkeypatch):
    """TRL's generation returns the scripted turns: FIRST_TURNS by position in the batch, AFTER_TOOL after a tool."""
    tokenizer = qwen_tokenizer()

    def generate(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        texts = [AFTER_TOOL if "<tool_response>" in tokenizer.decode(ids) else FIRST_TURNS[i % len(FIRST_TURNS)]
                 for i, ids in enumerate(prompt_ids)]  # fmt: skip
        return [tokenizer(t).input_ids for t in texts], None

    monkeypatch.setattr(trl.GRPOTrainer, "_generate_single_turn", generate)
    return tokenizer


@pytest.mark.slow
def test_tool_rollouts_masks_metrics_and_log(write_recipe, tmp_path, monkeypatch, scripted_generation):
    tokenizer = scripted_generation
    sandbox = fake_sandbox.install(monkeypatch)
    scored, losses = [], []
    original_score = OpenGRPOTrainer._generate_and_score_once
    original_logps = OpenGRPOTrainer._get_per_token_logps_and_entropies
    original_loss = OpenGRPOTrainer._compute_loss

    def score(self, inputs):
        output = original_score(self, inputs)
        scored.append({k: output[k].clone() for k in ("completion_ids", "completion_mask", "tool_mask")})
        return output

    def compute_loss(self, model, inputs):  # the loss pass: keep its inputs and per-token logprobs
        losses.append({"inputs": inputs})
        return original_loss(self, model, inputs)

    def logps(self, *args, **kwargs):
        out = original_logps(self, *args, **kwargs)
        if torch.is_grad_enabled() and losses and "logps" not in losses[-1]:
            out[0].retain_grad()
            losses[-1]["logps"] = out[0]
        return out

    monkeypatch.setattr(OpenGRPOTrainer, "_generate_and_score_once", score)
    monkeypatch.setattr(OpenGRPOTrainer, "_compute_loss", compute_loss)
    monkeypatch.setattr(OpenGRPOTrainer, "_get_per_token_logps_and_entropies", logps)

    main(str(_tools_recipe(write_recipe, tmp_path)))
    out = tmp_path / "out"

    # Masks: tool output tokens are 0 in tool_mask, the model's own tokens 1.
    batch = scored[0]
    for i, first in enumerate(FIRST_TURNS):
        ids, mask = batch["completion_ids"][i], batch["tool_mask"][i].bool() & batch["completion_mask"][i].bool()
        own, tool = tokenizer.decode(ids[mask]), tokenizer.decode(ids[~mask & batch["completion_mask"][i].bool()])
        if i == 3:  # no tool call: nothing masked
            assert own == first and tool == ""
            continue
        assert own == first + AFTER_TOOL
        assert tool.startswith("<|im_start|>user\n<tool_response>\n") and tool.endswith("<|im_start|>assistant\n")
    assert "\n42\n" in tokenizer.decode(batch["completion_ids"][0][batch["tool_mask"][0] == 0])
    assert "Traceback" in tokenizer.decode(batch["completion_ids"][1][batch["tool_mask"][1] == 0])

    # The loss: no gradient reaches the tool output's tokens; the model's own tokens get one.
    assert losses
    for loss in losses:
        grad, inputs = loss["logps"].grad, loss["inputs"]
        assert grad is not None
        tool_tokens = (inputs["tool_mask"] == 0) & (inputs["completion_mask"] == 1)
        assert tool_tokens.any() and torch.all(grad[tool_tokens] == 0)
        own_tokens = (inputs["tool_mask"] == 1) & (inputs["completion_mask"] == 1)
        assert (grad[own_tokens] != 0).any()

    # Each rollout starts a fresh episode: no program replays another rollout's calls.
    assert sorted(set(sandbox.programs)) == ["print(6*7)", "raise SystemExit(3)"]

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2
    for r in steps:  # per step: 4 completions, 3 calls to registered tools (1 failed) and 1 to an unknown name
        assert r["tools/calls_per_completion"] == 0.75 and r["tools/failure_rate"] == pytest.approx(1 / 3)
        assert r["tools/run_python/calls_per_completion"] == 0.5 and r["tools/run_python/failure_rate"] == 0.5
        assert r["tools/calculator/calls_per_completion"] == 0.25 and r["tools/calculator/failure_rate"] == 0.0
        assert r["tools/call_frequency"] == 0.75  # TRL's own

    log = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(log) == 8 and {r["step"] for r in log} == {1, 2}
    first = log[0]
    assert first["tool_calls"] == [{"name": "run_python", "arguments": {"code": "print(6*7)"}, "result": "42\n"}]
    assert first["completion"] == "so it is <answer>42</answer>"  # the assistant's text of every turn
    assert "[exit code 3]" in log[1]["tool_calls"][0]["result"]
    assert log[2]["tool_calls"][0]["result"] == "42"
    assert "tool_calls" not in log[3]


def script_engine_tool_calls(monkeypatch) -> list[int]:
    """The colocated engine's first-turn outputs (num_generations > 1; TRL asks one per prompt after a tool result)
    replaced by PYTHON_CALL for every other completion. Returns each call's num_generations."""
    import trl.generation.vllm_generation as vllm_generation

    call_ids = qwen_tokenizer()(PYTHON_CALL).input_ids
    original = vllm_generation.VLLMGeneration.generate
    calls = []

    def generate(self, prompts, images, num_generations, profiler=None):
        prompt_ids, completion_ids, logprobs, token_ids = original(self, prompts, images, num_generations, profiler)
        calls.append(num_generations)
        if num_generations > 1:
            for i in range(0, len(completion_ids), 2):
                completion_ids[i] = list(call_ids)
                if logprobs is not None:
                    logprobs[i] = [[-1.0] for _ in call_ids]
                if token_ids is not None:
                    token_ids[i] = [[t] for t in call_ids]
        return prompt_ids, completion_ids, logprobs, token_ids

    monkeypatch.setattr(vllm_generation.VLLMGeneration, "generate", generate)
    return calls


@pytest.mark.slow
def test_colocated_engine_double_runs_the_tool_loop(write_recipe, tmp_path, monkeypatch):
    engine = fake_vllm.install(monkeypatch)
    fake_sandbox.install(monkeypatch)
    calls = script_engine_tool_calls(monkeypatch)
    recipe = _tools_recipe(write_recipe, tmp_path, use_vllm=True, vllm_mode="colocate", tools=None,
                           max_completion_length=48, eval_dataset_name=str(tmp_path / "tasks.jsonl"),
                           eval_dataset_size=1, eval_on_start=True, eval_strategy="no", num_generations_eval=4,
                           per_device_eval_batch_size=4)  # fmt: skip
    main(str(recipe))
    (llm,) = engine.instances
    assert llm.kwargs["max_model_len"] > 128 + 48  # widened for the tool schema
    assert calls == [4, 1, 4, 1, 4, 1]  # evaluation, then per step: the first turn, the turn after the tool results
    after_tool = llm.generate_calls[3]
    tokenizer = qwen_tokenizer()
    assert len(after_tool) == 2  # the 2 completions that called the tool, with its result in their prompt
    assert all("<tool_response>\n42\n\n</tool_response>" in tokenizer.decode(ids) for ids in after_tool)
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2 and all(r["tools/run_python/calls_per_completion"] == 0.5 for r in steps)
    (evaluation,) = [r for r in rows if "eval/reward" in r]
    assert evaluation["eval/tools/run_python/calls_per_completion"] == 0.5  # counted apart from training's


@pytest.mark.slow
def test_unknown_tool_names_count_in_trls_metric_only(write_recipe, tmp_path, monkeypatch, scripted_generation):
    fake_sandbox.install(monkeypatch)
    monkeypatch.setattr("tests.unit.environments.test_tools_train.FIRST_TURNS", [UNKNOWN_CALL] * 4)
    main(str(_tools_recipe(write_recipe, tmp_path, max_steps=1)))
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "reward" in r)
    assert step["tools/call_frequency"] == 1.0 and step["tools/failure_frequency"] == 1.0  # TRL: "Tool nope not found"
    assert step["tools/calls_per_completion"] == 0.0  # registered tools only
    log = [json.loads(line) for line in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert log[0]["tool_calls"][0]["name"] == "nope" and "not found" in log[0]["tool_calls"][0]["result"]


def test_start_up_refuses_routes_the_data_does_not_name(write_recipe, tmp_path, monkeypatch):
    fake_sandbox.install(monkeypatch)
    recipe = _tools_recipe(write_recipe, tmp_path, environment={"calc": {"name": "python_exec"}})
    with pytest.raises(RecipeError, match="routes rows by their 'environment' column \\(calc\\), but the dataset"):
        main(str(recipe))


def test_start_up_refuses_an_environment_that_cannot_be_built(write_recipe, tmp_path, monkeypatch):
    from open_grpo.environments import python_exec

    def no_sandbox(*args):
        raise ModuleNotFoundError("No module named 'open_grpo.sandbox'")

    monkeypatch.setattr(python_exec, "open_sandbox", no_sandbox)
    monkeypatch.setattr(OpenGRPOTrainer, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(RecipeError, match=r"environment \(python_exec\) cannot be built with its defaults: Module"):
        main(str(_tools_recipe(write_recipe, tmp_path)))


def test_start_up_refuses_a_chat_template_without_tools(write_recipe, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained

    def plain_template(*args, **kwargs):
        tokenizer = original(*args, **kwargs)
        tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        return tokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", plain_template)
    loaded = []
    monkeypatch.setattr(OpenGRPOTrainer, "__init__", lambda *a, **k: loaded.append(1))  # never reached
    with pytest.raises(RecipeError, match="cannot render a tool call and its result"):
        main(str(_tools_recipe(write_recipe, tmp_path)))
    assert not loaded
