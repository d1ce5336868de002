"""The `code_tests` reward, the HumanEval dataset source, and the sandbox's place in recipes (check, start-up)."""

import json

import pytest

from open_grpo.cli import main as cli_main
from open_grpo.data.humaneval import read_problems
from open_grpo.errors import RecipeError
from open_grpo.recipe import load_recipe
from open_grpo.rewards.code_tests import code_tests, extract_code, read_tests, same_output
from open_grpo.rewards.registry import RewardSpecError, build_rewards, parse_reward_specs
from open_grpo.sandbox import recipe as sandbox_recipe
from open_grpo.sandbox import sandbox as sandbox_module
from tests.conftest import ROOT

STDIO = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}, {"input": "0 0", "output": "0"}]
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(autouse=True)
def process_sandbox(monkeypatch):
    """A fresh shared sandbox per test (the process backend: the same on every machine)."""
    monkeypatch.setattr(sandbox_recipe, "_shared", None)
    sandbox_recipe.configure({"backend": "process", "wall_s": 3.0, "workers": 2})
    yield
    sandbox_recipe.configure(None)


def fenced(code: str, lang: str = "python") -> str:
    return f"Let me think.\n```{lang}\n{code}```\nDone."


def test_extract_code_takes_the_last_closed_python_block():
    text = "```python\nfirst()\n```\nthen\n```py\nsecond()\n```\n```bash\nls\n```\n```python\nunclosed("
    assert extract_code(text) == "second()\n"
    assert extract_code(fenced("x = 1\n", lang="")) == "x = 1\n"
    assert extract_code("no code here") is None and extract_code("```python\n\n```") is None
    assert extract_code("```" * 20000) is None  # linear time, even on a pathological completion


def test_read_tests_forms():
    assert read_tests(STDIO)[0] == "stdio" and read_tests(json.dumps(STDIO))[1][1] == ("10 -4\n", "6")
    assert read_tests({"inputs": ["1\n"], "outputs": ["1\n"]}) == ("stdio", [("1\n", "1\n")])
    assert read_tests({"test": "def check(f): pass", "entry_point": "f"})[0] == "function"
    assert read_tests(None) is None and read_tests("not json") is None and read_tests([]) is None
    assert read_tests({"inputs": ["1"], "outputs": []}) is None
    assert same_output("5  \n\n", "5") and not same_output("5 6", "56")


def test_stdio_fraction_and_pass_fail():
    half_right = "a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)\n"
    completions = [fenced(ADD), fenced(half_right), "I cannot write code.", fenced(ADD)]
    tests = [STDIO, STDIO, STDIO, None]
    assert code_tests(completions, tests=tests) == [1.0, pytest.approx(2 / 3), 0.0, None]
    assert code_tests(completions, mode="pass_fail", tests=tests) == [1.0, 0.0, 0.0, None]
    assert code_tests(completions) == [None] * 4  # no tests column: cannot score


def test_stdio_output_is_compared_in_the_parent():
    ends_with_exit = ADD + "import sys\nsys.exit(0)\n"
    prints_expected = "print(5)\n"  # right for the first test only
    assert code_tests([fenced(ends_with_exit), fenced(prints_expected)], tests=[STDIO, STDIO]) == [1.0, 1 / 3]


def test_function_tests_need_the_program_to_finish():
    tests = {"prompt": "import math\n\ndef area(r):\n    '''Area of a circle.'''\n", "entry_point": "area",
             "test": "def check(f):\n    assert abs(f(1) - 3.14159) < 1e-3\n"}  # fmt: skip
    body_only = "    return math.pi * r * r\n"  # the prompt's signature and import come first
    whole = "import math\n\ndef area(r):\n    return math.pi * r ** 2\n"
    exits_early = "import os\nos._exit(0)\n"
    wrong = "def area(r):\n    return 3 * r * r\n"
    scores = code_tests([fenced(c) for c in (body_only, whole, exits_early, wrong)], tests=[tests] * 4)
    assert scores == [1.0, 1.0, 0.0, 0.0]


def test_mode_is_checked_with_the_recipe():
    with pytest.raises(
        RewardSpecError, match=r"rewards\[0\] \(code_tests\): 'mode' must be one of fraction, pass_fail"
    ):
        parse_reward_specs([{"name": "code_tests", "mode": "partial"}])
    [spec] = parse_reward_specs([{"name": "code_tests", "mode": "pass_fail"}])
    [reward], _ = build_rewards([spec])
    assert reward([fenced(ADD)], tests=[STDIO]) == [1.0]


def test_humaneval_canonical_solutions_pass_and_stubs_fail():
    problems = read_problems()
    assert len(problems) == 164
    tests = [{k: p[k] for k in ("prompt", "test", "entry_point")} for p in problems]
    canonical = [fenced(p["prompt"] + p["canonical_solution"]) for p in problems]
    stubs = [fenced(p["prompt"] + "    pass\n") for p in problems]
    scores = code_tests(canonical + stubs, mode="pass_fail", tests=tests + tests)  # 328 runs in parallel
    failed = [p["task_id"] for p, s in zip(problems, scores[:164]) if s != 1.0]
    passed_stubs = [p["task_id"] for p, s in zip(problems, scores[164:]) if s != 0.0]
    assert failed == [] and passed_stubs == []


def test_humaneval_dataset_source(write_recipe):
    from open_grpo.data.prompts import load_raw_dataset, to_prompts

    cfg = load_recipe(ROOT / "recipes" / "demo-code.yaml")
    rows = to_prompts(load_raw_dataset(cfg.script), cfg.script)
    assert len(rows) == 164 and set(rows.column_names) >= {"prompt", "tests", "task_id"}
    first = rows[0]
    assert "def has_close_elements" in first["prompt"][-1]["content"] and "```python" in first["prompt"][-1]["content"]
    assert first["tests"]["entry_point"] == "has_close_elements" and "def check" in first["tests"]["test"]


def test_sandbox_key_is_validated_with_the_recipe(write_recipe):
    recipe = write_recipe({"sandbox": {"backend": "docker", "wall_sec": 1}})
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe)
    assert "sandbox: unknown key 'wall_sec'. Did you mean 'wall_s'?" in str(e.value)


def test_check_runs_the_canary_and_describes_the_sandbox(capsys):
    assert cli_main(["check", "demo-code", "--gpus-per-node", "1", "--accelerate", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "sandbox: " in out and ("bwrap" in out or "does NOT isolate" in out)


def test_check_refuses_an_isolation_that_does_not_hold(monkeypatch, capsys):
    monkeypatch.setattr(sandbox_module, "canary_problems", lambda sb: ["the child sees network devices: ['eth0']"])
    code = cli_main(["check", "demo-code", "--accelerate", "cpu", "--sandbox", '{"backend": "process"}'])
    err = capsys.readouterr().err
    assert code == 2 and "sandbox (process): the child sees network devices" in err


def test_trainer_refuses_before_loading_a_model(monkeypatch, write_recipe):
    from open_grpo import train

    monkeypatch.setattr(sandbox_module, "canary_problems", lambda sb: ["the child can signal the trainer process"])
    recipe = write_recipe(
        {"dataset_name": "humaneval", "prompt_column": "problem", "solution_column": None,
         "rewards": [{"name": "code_tests"}], "sandbox": {"backend": "process"}}
    )  # fmt: skip
    monkeypatch.setattr(train, "resolve_model", lambda name: pytest.fail("a model was resolved"))
    with pytest.raises(RecipeError, match="sandbox \\(process\\): the child can signal the trainer process"):
        train.main(str(recipe))


@pytest.mark.slow
def test_tiny_code_recipe_trains(tmp_path):
    """The CPU code recipe: data, sandbox, reward and metrics through the trainer (a random model writes no code)."""
    from open_grpo.train import main

    main(str(ROOT / "recipes" / "demo-code.yaml"), ["--output_dir", str(tmp_path / "out"), "--max_steps", "2"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2 and all(r["rewards/code_tests/none_frac"] == 0.0 for r in steps)  # scored, not None
