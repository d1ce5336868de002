"""Tools and environments without training: the registries, the recipe keys and what is refused, the counted tool
callables, the python_exec environment over a sandbox double, transcripts, chat-template checks, the CLI listings."""

import json
from importlib.metadata import EntryPoint
from types import SimpleNamespace

import pytest
from transformers.utils import get_json_schema

from open_grpo.cli import main
from open_grpo.environments import ToolError, registry
from open_grpo.environments.arithmetic import make_tasks
from open_grpo.environments.calls import ToolStats, model_facing
from open_grpo.environments.chat_template import template_problems
from open_grpo.environments.python_exec import PythonExec
from open_grpo.environments.registry import ToolSpecError, load
from open_grpo.environments.specs import layout_problems, parse_tool_setup
from open_grpo.environments.transcript import tool_calls_of
from open_grpo.errors import RecipeError
from open_grpo.recipe import load_recipe
from tests.support import fake_sandbox

# ------------------------------------------------------------------------------------------------------- registry


def test_builtins_come_from_entry_points():
    env = load("environment", "python_exec")
    assert env.distribution == "open-grpo" and env.tool_names == ["run_python"]
    assert env.params["wall_s"] == 5.0
    tool = load("tool", "calculator")
    assert tool.tool_names == ["calculator"] and tool.params == {"max_digits": 1000}


@pytest.fixture
def fake_entry_points(monkeypatch):
    def install(kind, rows):
        found = {}
        for name, dist, value in rows:
            found.setdefault(name, []).append((dist, EntryPoint(name, value, registry.GROUPS[kind])))
        monkeypatch.setattr(registry, "_entry_points", {**registry._entry_points, kind: found})
        monkeypatch.setattr(registry, "_loaded", {})

    return install


def test_unknown_names_suggest():
    with pytest.raises(ToolSpecError, match=r"Unknown environment 'python_exc'\. Did you mean 'python_exec'\?"):
        parse_tool_setup({"name": "python_exc"}, None)
    with pytest.raises(ToolSpecError, match=r"tools\[0\]: Unknown tool 'calculater'\. Did you mean 'calculator'"):
        parse_tool_setup(None, ["calculater"])


def test_same_name_from_two_distributions(fake_entry_points):
    fake_entry_points("tool", [("dup", "pkg-a", "json:dumps"), ("dup", "pkg-b", "json:loads")])
    with pytest.raises(ToolSpecError, match="tool 'dup' is registered by two distributions: 'pkg-a'.*and 'pkg-b'"):
        load("tool", "dup")


def test_plugin_import_failure_names_plugin_and_cause(fake_entry_points):
    fake_entry_points("environment", [("broken", "pkg-x", "no_such_module_xyz:Env")])
    with pytest.raises(ToolSpecError, match="environment plugin 'broken'.*pkg-x.*failed to import: ModuleNotFound"):
        load("environment", "broken")


class NoReset:
    def act(self, x: int) -> str:
        """Act.

        Args:
            x: how much
        """


class NeedsArgument:
    def __init__(self, level):
        self.level = level

    def reset(self, **row):
        pass

    def act(self, x):  # no type hint, no docstring: no schema for the model
        pass


def undocumented(text: str) -> str:
    return text


def test_plugins_that_break_the_contract(fake_entry_points):
    fake_entry_points("environment", [("noreset", "p", "tests.unit.environments.test_tools:NoReset"),
                                      ("needs", "p", "tests.unit.environments.test_tools:NeedsArgument")])  # fmt: skip
    fake_entry_points("tool", [("undoc", "p", "tests.unit.environments.test_tools:undocumented")])
    with pytest.raises(ToolSpecError, match=r"'noreset'.*has no reset\(\*\*row\) method"):
        load("environment", "noreset")
    with pytest.raises(ToolSpecError) as e:
        load("environment", "needs")
    assert "['level'] have no default" in str(e.value) and "tool 'act': no schema for the model" in str(e.value)
    with pytest.raises(ToolSpecError, match="tool 'undoc': no schema for the model.*docstring"):
        load("tool", "undoc")


# ---------------------------------------------------------------------------------------------------- recipe keys


def test_recipe_forms():
    one = parse_tool_setup("python_exec", ["calculator", {"name": "calculator"}][:1])
    assert not one.routed and one.environments[None].plugin.name == "python_exec"
    assert one.tool_names() == ["calculator", "run_python"]
    routed = parse_tool_setup({"calc": {"name": "python_exec", "wall_s": 2.0}, "plain": "python_exec"}, None)
    assert routed.routed and routed.environments["calc"].params == {"wall_s": 2.0}


def test_parameters_checked():
    with pytest.raises(ToolSpecError) as e:
        parse_tool_setup(
            {"name": "python_exec", "wall": 2, "memory_mb": "lots"}, [{"name": "calculator", "digits": 3}]
        )
    problems = e.value.problems
    assert any("unknown parameter 'wall'. Did you mean 'wall_s'?" in p for p in problems)
    assert any("'memory_mb' must be like its default 512, got 'lots'" in p for p in problems)
    assert any("tools[0] (calculator): unknown parameter 'digits'. Did you mean 'max_digits'?" in p for p in problems)


def test_duplicate_tool_names():
    with pytest.raises(ToolSpecError, match="tool 'calculator' is listed 2 times"):
        parse_tool_setup(None, ["calculator", "calculator"])


def test_recipe_errors_are_collected(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({"environment": {"name": "python_exc"}, "max_tool_calling_iterations": 0}))
    assert "Did you mean 'python_exec'" in str(e.value)
    with pytest.raises(RecipeError, match="'max_tool_calling_iterations' is set but the recipe has no"):
        load_recipe(write_recipe({"max_tool_calling_iterations": 2}))
    with pytest.raises(RecipeError, match="'max_tool_calling_iterations' must be at least 1"):
        load_recipe(write_recipe({"tools": ["calculator"], "max_tool_calling_iterations": 0}))
    recipe = load_recipe(write_recipe(), ["--tools", '["calculator"]', "--environment", "python_exec"])
    assert recipe.script.tools == ["calculator"] and recipe.script.environment == "python_exec"


def test_tensor_parallel_refused_in_recipe_and_check(write_recipe, capsys):
    tp2 = {"environment": "python_exec", "use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 2}
    with pytest.raises(RecipeError, match=r"vllm_tensor_parallel_size: 2' can hang \(TRL issue #5382\)"):
        load_recipe(write_recipe(tp2))
    assert main(["check", "qwen-tools-arith", "--gpus-per-node", "8", "--vllm_tensor_parallel_size", "2"]) == 2
    assert "TRL issue #5382" in capsys.readouterr().err
    load_recipe(write_recipe({**tp2, "environment": None}))  # without tools TP=2 is fine


def test_layouts_the_tool_loop_hangs_on():
    def args(**kw):
        base = dict(use_vllm=True, vllm_mode="colocate", vllm_tensor_parallel_size=1, vllm_enable_sleep_mode=False)
        return SimpleNamespace(**{**base, **kw})

    assert layout_problems(args(), world_size=8, shards_weights=True) == []
    assert layout_problems(args(vllm_mode="server"), world_size=1) == []
    assert "vllm_mode: server' on 2 processes" in layout_problems(args(vllm_mode="server"), world_size=2)[0]
    assert "use_vllm: false' under ZeRO-3" in layout_problems(args(use_vllm=False), 4, shards_weights=True)[0]
    assert layout_problems(args(use_vllm=False), 4, shards_weights=False) == []
    assert "sleep_mode" in layout_problems(args(vllm_enable_sleep_mode=True), 2, shards_weights=True)[0]


# ------------------------------------------------------------------------------------------ tool callables, stats


def lookup(word: str, *, prefix: str = ">") -> str:
    """Look a word up.

    Args:
        word: the word
    """
    if word == "boom":
        raise RuntimeError("boom")
    return ToolError("no such word") if word == "missing" else f"{prefix}{word}"


def test_recipe_parameters_are_bound_and_hidden_from_the_model():
    stats = ToolStats(["lookup"])
    tool = model_facing(lookup, "lookup", {"prefix": "#"}, stats)
    schema = get_json_schema(tool)["function"]
    assert schema["name"] == "lookup" and list(schema["parameters"]["properties"]) == ["word"]
    assert tool(word="a") == "#a"
    assert tool(word="missing") == "no such word"
    with pytest.raises(RuntimeError):
        tool(word="boom")
    stats.count_completions(4)
    assert stats.pop_metrics() == {
        "tools/calls_per_completion": 0.75, "tools/failure_rate": 2 / 3,
        "tools/lookup/calls_per_completion": 0.75, "tools/lookup/failure_rate": 2 / 3,
    }  # fmt: skip
    assert stats.pop_metrics() == {}  # nothing generated since


# ---------------------------------------------------------------------------------------------------- python_exec


def test_python_exec_output_failures_and_state(monkeypatch):
    sandbox = fake_sandbox.install(monkeypatch)
    env = PythonExec(max_output_chars=40)
    assert env.run_python(code="print(6*7)") == "42\n"
    failed = env.run_python(code="raise SystemExit(3)")
    assert isinstance(failed, ToolError) and "[stderr]" in failed and failed.endswith("[exit code 3]")
    assert "ran past the 5 s limit" in env.run_python(code="while True: pass")
    env.run_python(code="x = 1")
    # the earlier successful calls run again first (silently); the failed ones do not
    assert "print(6*7)" in sandbox.programs[-1] and "SystemExit" not in sandbox.programs[-1]
    assert sandbox.programs[-1].endswith("\nx = 1") and sandbox.programs[-1].count("\n") == 1
    env.reset(prompt="next rollout")
    env.run_python(code="print(6*7)")
    assert sandbox.programs[-1] == "print(6*7)"  # a new rollout starts clean


def test_python_exec_truncates_long_output(monkeypatch):
    from tests.support.fake_sandbox import FakeRunResult

    fake_sandbox.install(monkeypatch, lambda program: FakeRunResult(stdout="a" * 100, stderr="b" * 99 + "E"))
    text = PythonExec(max_output_chars=10).run_python(code="...")
    assert text.startswith("a" * 10 + "\n[... 90 more characters]") and text.endswith("b" * 9 + "E")


def test_arithmetic_tasks_are_exact_and_seeded():
    tasks = make_tasks(50, seed=3)
    assert tasks == make_tasks(50, seed=3) and tasks != make_tasks(50, seed=4)
    for task in tasks:
        expression = task["problem"].removeprefix("What is ").removesuffix("?")
        assert str(eval(expression)) == task["solution"]


# -------------------------------------------------------------------------------------- transcripts, templates


def test_tool_calls_read_back_from_a_completion():
    call = {"type": "function", "function": {"name": "run_python", "arguments": {"code": "print(1)"}}}
    other = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2*3"}}}
    completion = [
        {"role": "assistant", "content": "", "tool_calls": [call, other]},
        {"role": "tool", "name": "calculator", "content": "6"},  # an async tool's result may come first
        {"role": "tool", "name": "run_python", "content": "1\n"},
        {"role": "assistant", "content": "<answer>6</answer>"},
    ]
    assert tool_calls_of(completion) == [
        {"name": "run_python", "arguments": {"code": "print(1)"}, "result": "1\n"},
        {"name": "calculator", "arguments": {"expression": "2*3"}, "result": "6"},
    ]
    assert tool_calls_of([{"role": "assistant", "content": "hi"}]) == [] and tool_calls_of("text") == []


def test_tiny_tokenizer_supports_tools_and_a_plain_template_is_refused():
    from open_grpo.data.tiny_model import qwen_tokenizer

    tokenizer = qwen_tokenizer()
    assert template_problems(tokenizer, "random:tiny") == []
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert "cannot render a tool call" in template_problems(tokenizer, "plain")[0]


@pytest.mark.slow
def test_check_refuses_a_local_model_without_tool_template(tmp_path, capsys):
    from transformers import Qwen2Config

    from open_grpo.data.tiny_model import qwen_tokenizer
    from open_grpo.planning.model_shapes import SHAPES

    model = tmp_path / "model"
    Qwen2Config(**SHAPES["tiny"].config_kwargs()).save_pretrained(model)
    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(model)
    check = ["check", "qwen-tools-arith", "--gpus-per-node", "1", "--model_name_or_path", str(model), "--json"]
    assert main(check) == 2
    assert "cannot render a tool call" in json.loads(capsys.readouterr().out)["errors"][0]
    assert main(check[:4] + ["--model_name_or_path", "random:tiny"]) == 0  # Qwen2.5-Instruct's template passes
    assert "not checked" not in capsys.readouterr().out


def test_a_cached_model_with_an_older_template_is_rebuilt(tmp_path):
    from open_grpo.data.tiny_model import is_complete, save_random_model

    folder = save_random_model(tmp_path / "m")
    assert is_complete(folder)
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert not is_complete(folder)


def test_cli_lists_environments_and_tools(capsys):
    assert main(["environments"]) == 0
    envs = capsys.readouterr().out
    assert "python_exec  [open-grpo: open_grpo.environments.python_exec:PythonExec]" in envs
    assert "tools: run_python" in envs and "wall_s=5.0" in envs
    assert main(["tools"]) == 0
    tools = capsys.readouterr().out
    assert "calculator  [open-grpo:" in tools and "max_digits=1000" in tools


# ------------------------------------------------------------------------------------------- TRL's arguments


def _datasets(rows):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"q{i}"}], **row} for i, row in enumerate(rows)])


def test_routed_environments_become_trls_dict_and_count_their_calls(write_recipe, monkeypatch):
    from open_grpo.data.tiny_model import qwen_tokenizer
    from open_grpo.environments.setup import trainer_tool_kwargs
    from open_grpo.trainer.config import trainer_config

    fake_sandbox.install(monkeypatch)
    recipe = load_recipe(write_recipe({"environment": {"calc": {"name": "python_exec"}, "py": "python_exec"}}))
    tokenizer = qwen_tokenizer()
    routed = _datasets([{"environment": "calc"}, {"environment": "py"}])
    training = trainer_config(recipe)  # what the trainer gets
    kwargs = trainer_tool_kwargs(recipe.script, training, tokenizer, "random:tiny", [routed, None])
    assert kwargs["tools"] is None and sorted(kwargs["environment_factory"]) == ["calc", "py"]
    env = kwargs["environment_factory"]["calc"]()
    env.reset()
    assert env.run_python(code="print(6*7)") == "42\n" and get_json_schema(env.run_python)["function"]["name"]
    kwargs["tool_stats"].count_completions(1)
    assert kwargs["tool_stats"].pop_metrics()["tools/run_python/calls_per_completion"] == 1.0

    stray = _datasets([{"environment": "calc"}, {"environment": "cal"}, {"environment": None}])
    with pytest.raises(
        RecipeError, match=r"2 of 3 rows have an 'environment' value that names no route.*\(None, cal\)"
    ):
        trainer_tool_kwargs(recipe.script, training, tokenizer, "random:tiny", [stray, None])


def test_the_engine_context_makes_room_for_the_tool_schemas(write_recipe, monkeypatch):
    from open_grpo.data.tiny_model import qwen_tokenizer
    from open_grpo.environments.setup import trainer_tool_kwargs
    from open_grpo.trainer.config import trainer_config

    fake_sandbox.install(monkeypatch)
    recipe = load_recipe(write_recipe({"environment": "python_exec", "tools": ["calculator"], "use_vllm": True}))
    training = trainer_config(recipe)
    assert training.vllm_max_model_length is None
    trainer_tool_kwargs(recipe.script, training, qwen_tokenizer(), "random:tiny", [_datasets([{}]), None])
    overhead = training.vllm_max_model_length - 128 - 16  # the demo's max_prompt_tokens, completion length
    assert 150 < overhead < 400  # two tool schemas and Qwen's tool instructions, in tokens


def test_check_builds_the_environment_and_runs_its_sandbox_canary(monkeypatch, capsys):
    """python_exec's sandbox must hold here before a model loads: `check` builds each environment once, as start-up
    does, and a named backend whose canary fails is refused with the recipe's other problems (exit 2)."""
    from open_grpo.environments import python_exec
    from open_grpo.sandbox import sandbox as sandbox_module

    monkeypatch.setattr(python_exec, "_sandboxes", {})
    monkeypatch.setattr(sandbox_module, "canary_problems", lambda sb: ["the child sees network devices: ['eth0']"])
    environment = '{"name": "python_exec", "backend": "process"}'
    check = ["check", "qwen-tools-arith", "--gpus-per-node", "1", "--model_name_or_path", "random:tiny", "--json"]
    assert main(check + ["--environment", environment]) == 2
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert any("environment (python_exec) cannot be built" in e and "the child sees network devices" in e
               for e in errors), errors  # fmt: skip
    monkeypatch.setattr(sandbox_module, "canary_problems", lambda sb: [])
    assert main(check + ["--environment", environment]) == 0
