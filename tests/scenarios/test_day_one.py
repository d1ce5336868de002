"""Day one as a user: every bad input ends in one clear message (exit 2), a hostile reward never hangs or poisons a run.

Each test walks one mistake or hostile input: what the user did, and what they must see instead of a traceback.
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from open_grpo.data.models import resolve_model
from open_grpo.data.prompts import load_raw_dataset, to_prompts
from open_grpo.recipe import RecipeError, load_recipe
from open_grpo.recipe.keys import ScriptArguments
from open_grpo.rewards import registry
from open_grpo.rewards.limits import DEFAULT_TIME_LIMIT_S, drop_nonfinite_sums
from open_grpo.rewards.registry import RewardSpecError, ScoredReward, build_rewards, parse_reward_specs
from open_grpo.rewards.text import answer_text
from open_grpo.rewards.verifier import VerifierPool

SRC = str(Path(registry.__file__).resolve().parents[2])  # the folder holding open_grpo

HOSTILE_PLUGIN = '''
import time

import numpy as np
import torch


def hang_forever(completions, **columns):
    """Never returns."""
    while True:
        time.sleep(60)


def huge(completions, **columns):
    """Finite in float32, but twice it is not: the weighted sum overflows for the first completion."""
    return [3e38] + [0.0] * (len(completions) - 1)


def not_finite(completions, **columns):
    """NaN, infinities and a double beyond float32, then ordinary values."""
    bad = [float("nan"), float("inf"), -float("inf"), 1e308]
    return (bad + [1.0] * len(completions))[: len(completions)]


def array_scalars(completions, **columns):
    """numpy and torch scalars, as a vectorised reward returns them."""
    kinds = [np.float32(0.5), np.int64(1), torch.tensor(0.25), np.float64(0.75), np.array(0.5), True]
    return [kinds[i % len(kinds)] for i in range(len(completions))]
'''


@pytest.fixture
def hostile_site(tmp_path, monkeypatch):
    """A throwaway distribution registering hostile rewards through the real `open_grpo.rewards` entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hostile_rewards.py").write_text(HOSTILE_PLUGIN)
    dist = site / "hostile_rewards-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hostile-rewards\nVersion: 0.1\n")
    names = ("hang_forever", "huge", "not_finite", "array_scalars")
    (dist / "entry_points.txt").write_text(
        "[open_grpo.rewards]\n" + "".join(f"{n} = hostile_rewards:{n}\n" for n in names)
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points", None)  # discover again, with the plugin installed
    monkeypatch.setattr(registry, "_loaded", {})
    return site


def _reward(entry: dict) -> ScoredReward:
    rewards, _ = build_rewards(parse_reward_specs([entry]))
    return rewards[0]


# ------------------------------------------------------------------------------------ row 8: a reward that hangs


def test_reward_past_its_time_limit_scores_none_and_counts_a_timeout(hostile_site):
    reward = _reward({"name": "hang_forever", "time_limit": 1})
    start = time.monotonic()
    assert reward(["a", "b", "c"]) == [None, None, None]
    assert time.monotonic() - start < 5
    stats = reward.pop_stats()
    assert stats["rewards/hang_forever/timeouts"] == 3 and stats["rewards/hang_forever/none_frac"] == 1.0
    assert stats["rewards/hang_forever/errors"] == 0


def test_time_limit_with_on_error_zero_and_raise(hostile_site):
    assert _reward({"name": "hang_forever", "time_limit": 0.5, "on_error": "zero"})(["a"]) == [0.0]
    with pytest.raises(TimeoutError, match=r"'hang_forever' did not return within time_limit=0.5s"):
        _reward({"name": "hang_forever", "time_limit": 0.5, "on_error": "raise"})(["a"])


def test_default_time_limit_and_self_bounded_rewards():
    assert _reward({"name": "format"}).call_bounded.limit == DEFAULT_TIME_LIMIT_S == 300
    assert _reward({"name": "format", "time_limit": 2.5}).call_bounded.limit == 2.5
    # accuracy bounds every completion itself (its `timeout`): no default bound on the whole call
    assert _reward({"name": "accuracy"}).call_bounded.limit is None
    assert _reward({"name": "accuracy", "time_limit": 600}).call_bounded.limit == 600


@pytest.mark.parametrize("bad", [0, -1, "soon", True, float("inf"), [5]])
def test_time_limit_must_be_a_positive_number(bad):
    with pytest.raises(RewardSpecError, match=r"rewards\[0\] \(format\): 'time_limit' must be a positive number"):
        parse_reward_specs([{"name": "format", "time_limit": bad}])


def test_time_limit_in_a_recipe_and_on_the_command_line(write_recipe):
    recipe = load_recipe(write_recipe({"rewards": [{"name": "format", "time_limit": 30}]}))
    assert parse_reward_specs(recipe.script.rewards)[0].time_limit == 30
    override = ["--rewards", '[{"name": "format", "time_limit": 0}]']
    with pytest.raises(RecipeError, match="'time_limit' must be a positive number"):
        load_recipe(write_recipe(), override)


def test_a_process_with_a_hung_reward_call_exits_0_promptly(hostile_site):
    script = (
        "from open_grpo.rewards.registry import build_rewards, parse_reward_specs\n"
        "rewards, _ = build_rewards(parse_reward_specs([{'name': 'hang_forever', 'time_limit': 1}]))\n"
        "print(rewards[0](['a', 'b']), rewards[0].pop_stats()['rewards/hang_forever/timeouts'])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hostile_site), SRC])}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["[None,", "None]", "2"]
    assert time.monotonic() - start < 60  # importing torch on a busy machine; the hung call costs 1 s


@pytest.mark.slow
def test_hostile_plugins_in_a_training_run(hostile_site, write_recipe, tmp_path):
    """A reward that never returns and one whose weighted sum overflows: training goes on and the process exits 0."""
    recipe = write_recipe(
        {
            "max_steps": 2,
            "dataset_size": 16,
            "rewards": [
                {"name": "lowercase_letters"},
                {"name": "hang_forever", "time_limit": 1},
                {"name": "huge", "weight": 2.0},
            ],
        }
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hostile_site), SRC])}
    run = subprocess.run(  # a hang (a call joined at exit) ends in TimeoutExpired
        [sys.executable, "-m", "open_grpo.train", "--config", str(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rewards/hang_forever/timeouts" in r]
    assert len(steps) == 2
    assert all(r["rewards/hang_forever/timeouts"] > 0 for r in steps)
    assert all(r["rewards/huge/errors"] > 0 for r in steps)  # the overflowing sum, counted against `huge`
    assert all(math.isfinite(r["reward"]) for r in steps)


def _exits(code):
    def reward(completions, **columns):
        sys.exit(code)

    return reward


@pytest.mark.parametrize("time_limit", [None, 5])  # called directly, and in the time-limit thread
def test_a_reward_calling_sys_exit_fails_under_its_on_error(time_limit):
    """sys.exit() inside a reward is a failure of that reward, not the end of training with its exit code."""
    reward = ScoredReward(registry.RewardSpec(name="format", time_limit=time_limit))
    reward.func = _exits(3)
    assert reward(["a", "b"]) == [None, None]
    assert reward.pop_stats()["rewards/format/errors"] == 2
    zero = ScoredReward(registry.RewardSpec(name="format", on_error="zero", time_limit=time_limit))
    zero.func = _exits(3)
    assert zero(["a"]) == [0.0]
    strict = ScoredReward(registry.RewardSpec(name="format", on_error="raise", time_limit=time_limit))
    strict.func = _exits(3)
    with pytest.raises(RuntimeError, match=r"reward 'format' raised SystemExit\(3\)"):  # every rank stops together
        strict(["a"])


def test_keyboard_interrupt_from_a_reward_is_a_failure_while_training(monkeypatch):
    """Training handles Ctrl-C itself (a checkpoint at the step's end): a KeyboardInterrupt then comes from the reward."""
    import signal

    reward = ScoredReward(registry.RewardSpec(name="format"))

    def interrupts(completions, **columns):
        raise KeyboardInterrupt

    reward.func = interrupts
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C outside training still interrupts
        reward(["a"])
    monkeypatch.setattr(signal, "getsignal", lambda signum: lambda *a: None)  # training's handler installed
    assert reward(["a"]) == [None] and reward.pop_stats()["rewards/format/errors"] == 1


# ------------------------------------------------------------------------ row 10: non-finite and numpy values


def test_nan_and_infinite_values_are_errors(hostile_site):
    reward = _reward({"name": "not_finite"})
    assert reward(["a"] * 6) == [None, None, None, None, 1.0, 1.0]
    stats = reward.pop_stats()
    assert stats["rewards/not_finite/errors"] == 4 and stats["rewards/not_finite/none_frac"] == 4 / 6


def test_numpy_and_torch_scalars_are_numbers(hostile_site):
    reward = _reward({"name": "array_scalars"})
    values = reward(["a"] * 6)
    assert values == [0.5, 1.0, 0.25, 0.75, 0.5, 1.0] and all(type(v) is float for v in values)
    assert reward.pop_stats()["rewards/array_scalars/errors"] == 0


@pytest.mark.parametrize("values", [np.array([0.5, np.nan]), torch.tensor([0.5, float("inf")])])
def test_a_vector_of_values_is_a_list(values):
    reward = ScoredReward(registry.RewardSpec(name="format"))
    reward.func = lambda completions, **columns: values
    assert reward(["a", "b"]) == [0.5, None]
    assert reward.pop_stats()["rewards/format/errors"] == 1


@pytest.mark.parametrize("value", ["0.5", [1.0], torch.tensor([1.0, 2.0]), np.array([1.0]), object()])
def test_values_that_are_not_real_numbers_are_errors(value):
    reward = ScoredReward(registry.RewardSpec(name="format"))
    reward.func = lambda completions, **columns: [value] * len(completions)
    assert reward(["a", "b"]) == [None, None]
    assert reward.pop_stats()["rewards/format/errors"] == 2


def test_a_call_with_a_bad_value_counts_each_completion_once():
    reward = ScoredReward(registry.RewardSpec(name="format"))
    reward.func = lambda completions, **columns: [math.nan, "x"]
    assert reward(["a", "b"]) == [None, None]
    assert reward.pop_stats()["rewards/format/errors"] == 2


def test_weighted_sum_that_overflows_is_unscorable():
    rewards, weights = build_rewards(parse_reward_specs([{"name": "format"}, {"name": "tag_count", "weight": 2}]))
    # rows: fine; overflows only once weighted (float32, as TRL sums); every reward None; overflows on rank 1's rows
    per_func = torch.tensor([[1.0, 0.5], [1.0, 3e38], [math.nan, math.nan], [3e38, 3e38]])
    out = drop_nonfinite_sums(per_func, torch.tensor(weights), rewards, process_index=0, num_processes=2)
    assert out[0].tolist() == [1.0, 0.5]
    assert torch.isnan(out[1]).all() and torch.isnan(out[2]).all() and torch.isnan(out[3]).all()
    # errors are counted for this process's rows only (0 and 1), against the reward with the largest weighted term
    assert rewards[1].pop_stats()["rewards/tag_count/errors"] == 1
    assert rewards[0].pop_stats()["rewards/format/errors"] == 0
    same = torch.tensor([[1.0, 0.5]])
    assert drop_nonfinite_sums(same, torch.tensor(weights), rewards) is same


# ----------------------------------------------------------------- row 11: the working directory of the workers


def test_verifier_workers_ignore_the_working_directory(tmp_path, monkeypatch):
    for shadow in ("json.py", "math_verify.py"):
        (tmp_path / shadow).write_text("raise SystemExit('imported from the working directory')\n")
    monkeypatch.chdir(tmp_path)
    pool = VerifierPool(size=1)
    try:
        outcomes = pool.score([("2", r"\boxed{2}", False), ("2", r"\boxed{3}", False)], timeout=10)
    finally:
        pool.close()
    assert [(o.status, o.value) for o in outcomes] == [("ok", 1.0), ("ok", 0.0)]


def test_verifier_workers_keep_pythonpath(tmp_path, monkeypatch):
    """A PYTHONPATH entry still reaches the worker: a shadowing module there is the user's explicit choice."""
    (tmp_path / "math_verify.py").write_text("raise SystemExit('imported from PYTHONPATH')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    pool = VerifierPool(size=1)
    try:
        with pytest.raises(RuntimeError, match="worker failed to start"):
            pool.score([("2", r"\boxed{2}", False)], timeout=10)
    finally:
        pool.close()


# ------------------------------------------------------------------------------- row 12: <answer> extraction


def _answer_text_by_regex(text):
    tagged = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return (tagged[-1], True) if tagged else (text, False)


ANSWER_CASES = [
    "",
    "no tags at all \\boxed{3}",
    "<answer>42</answer>",
    "<think>x</think>\n<answer>\n42\n</answer>",
    "<answer>1</answer> then <answer>2</answer>",
    "<answer>1</answer> then <answer>2",
    "<answer><answer>nested</answer>",
    "<answer>a</answer></answer>",
    "</answer><answer>b</answer>",
    "<answer></answer>",
    "<answer>multi\nline</answer> trailing",
    "<answer>x</answer><answer>",
    "<ANSWER>upper</ANSWER>",
    "<answer>1</answer" + "<answer>2</answer>",
]


@pytest.mark.parametrize("text", ANSWER_CASES)
def test_answer_text_as_before_on_normal_and_edge_inputs(text):
    assert answer_text(text) == _answer_text_by_regex(text)


def test_answer_text_as_before_on_random_tag_soup():
    rng = np.random.default_rng(0)
    pieces = ["<answer>", "</answer>", "x", "\n", "<", ">", "answer", "/"]
    for _ in range(2000):
        text = "".join(rng.choice(pieces, size=rng.integers(0, 12)))
        assert answer_text(text) == _answer_text_by_regex(text), text


@pytest.mark.parametrize("text", ["<answer>" * 20000, "<answer>" * 20000 + "</answer>", "<answer>x</answer>" * 20000])
def test_answer_text_is_linear(text):
    start = time.monotonic()
    answer_text(text)
    assert time.monotonic() - start < 1.0


# ------------------------------------------------------------------- row 13: model shape, data files, dataset_size


def test_unknown_random_shape_is_a_recipe_error_before_anything_loads(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({"model_name_or_path": "random:huge"}))
    assert "'model_name_or_path': unknown random model shape 'huge' in 'random:huge'" in str(e.value)
    assert "random:tiny, random:0.5b, random:1.5b, random:7b" in str(e.value)
    with pytest.raises(RecipeError, match="unknown random model shape 'huge'"):
        resolve_model("random:huge")


def test_an_uncached_hub_model_offline_is_one_line(write_recipe, capsys, monkeypatch):
    from open_grpo import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = write_recipe({"model_name_or_path": "nobody/never-downloaded", "max_steps": 1})
    assert train.cli(["--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("open-grpo:")]
    assert "'nobody/never-downloaded' is a hub id but the hub is offline" in line and "Traceback" not in err
    assert "huggingface-cli download nobody/never-downloaded" in line and "local folder" in line


def _script(path, **kw):
    return ScriptArguments(dataset_name=str(path), prompt_column="question", solution_column="answer", **kw)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_jsonl_file_names_the_file(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    Path("data/train.jsonl").write_text(content)
    with pytest.raises(RecipeError, match=r"dataset file 'data/train.jsonl' is empty: it holds no rows"):
        load_raw_dataset(_script("data/train.jsonl"))


def test_malformed_jsonl_names_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = json.dumps({"question": "1 + 1?", "answer": "2"})
    Path("train.jsonl").write_text(f'{good}\n{good}\n{{"question": "2 + 2?", "answer": \n{good}\n')
    with pytest.raises(RecipeError, match=r"dataset file 'train.jsonl', line 3: not valid JSON \(Expecting value"):
        load_raw_dataset(_script("train.jsonl"))
    Path("train.jsonl").write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(RecipeError, match=r"'train.jsonl', line 2: each line must be a JSON object"):
        load_raw_dataset(_script("train.jsonl"))


def test_malformed_json_file_names_the_file(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[{"question": "1 + 1?", "answer": "2"},')
    with pytest.raises(RecipeError, match=rf"dataset file '{path}' is not valid JSON \(line 1"):
        load_raw_dataset(_script(path))


def test_a_data_file_with_a_header_and_no_rows(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("question,answer\n")
    with pytest.raises(RecipeError, match=re.escape(f"dataset file(s) {[str(path)]} hold no rows")):
        load_raw_dataset(_script(path))


@pytest.mark.parametrize("size", [0, -3])
def test_dataset_size_must_be_positive(write_recipe, size):
    with pytest.raises(RecipeError, match=rf"'dataset_size' must be at least 1, got {size}"):
        load_recipe(write_recipe({"dataset_size": size}))


# ---------------------------------------------------------------------------- row 14: null prompts and solutions


def _rows_file(tmp_path, rows):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_null_or_empty_prompts_are_an_error_naming_column_and_rows(tmp_path):
    rows = [{"question": q, "answer": "1"} for q in ["1 + 0?", None, "0 + 1?", "", "  ", "2 - 1?"]]
    path = _rows_file(tmp_path, rows)
    with pytest.raises(RecipeError) as e:
        to_prompts(load_raw_dataset(_script(path)), _script(path))
    message = str(e.value)
    assert "3 of 6 rows" in message and "null or empty 'question'" in message and "rows 1, 3, 4" in message
    assert "'prompt_column'" in message and "None" not in message.split(":", 1)[1].replace("null", "")


def test_null_solutions_are_an_error(tmp_path):
    rows = [{"question": "1 + 1?", "answer": a} for a in ["2", None, "2"]]
    path = _rows_file(tmp_path, rows)
    with pytest.raises(
        RecipeError, match=r"1 of 3 rows .* null or empty 'answer' \(row 1, counting from 0\).*'solution_column: null'"
    ):
        to_prompts(load_raw_dataset(_script(path)), _script(path))


def test_prompts_without_a_solution_column_need_no_solutions(tmp_path):
    path = _rows_file(tmp_path, [{"question": "1 + 1?", "answer": None}])
    script = ScriptArguments(dataset_name=str(path), prompt_column="question", solution_column=None)
    assert to_prompts(load_raw_dataset(script), script)[0]["prompt"][-1]["content"] == "1 + 1?"


# ----------------------------------------------------------------------------- row 15: messages a user reads


def test_rewards_given_as_a_string(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({"rewards": "accuracy"}))
    message = str(e.value)
    assert message.count("'rewards' must be a list or null, e.g. [{name: accuracy}]") == 1
    assert "must be JSON" not in message and len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "override,expected",
    [
        (
            ["--per_device_train_batch_size", "abc"],
            "'per_device_train_batch_size' must be int (TrainingArguments), got 'abc'",
        ),
        (["--foo", "1"], "unknown command-line override '--foo'"),
        (["--learning_rat", "0.1"], "unknown command-line override '--learning_rat'. Did you mean '--learning_rate'?"),
        (["--use_vllm", "maybe"], "'use_vllm' must be bool (GRPOConfig), got 'maybe'"),
        (["5"], "command-line value(s) ['5'] without a --<key> before them"),
    ],
)
def test_bad_override_is_one_line_and_exit_2(write_recipe, capsys, override, expected):
    from open_grpo.train import cli

    recipe = write_recipe({"max_steps": 1, "dataset_size": 8})  # short, should the override wrongly pass
    assert cli(["--config", str(recipe), *override]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert "usage:" not in err


def test_good_overrides_still_work(write_recipe):
    recipe = load_recipe(write_recipe(), ["--max_steps", "3", "--no_save_final_model", "--learning-rate", "0.5"])
    assert recipe.training.max_steps == 3 and recipe.script.save_final_model is False
    assert recipe.training.learning_rate == 0.5


# ------------------------------------------------------------------------ the random-model cache, built by N ranks

RANK_MAIN = """
import os, sys, time
import torch.distributed as dist

rank, world, init = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", rank=rank, world_size=world, init_method=init)  # as under accelerate launch
if rank == 0:  # arrives once another rank has published the folder
    published = os.path.join(os.environ["OPEN_GRPO_CACHE"], "random-qwen2-tiny")
    deadline = time.monotonic() + 240
    while not os.path.exists(published) and time.monotonic() < deadline:
        time.sleep(0.2)
from open_grpo.data.models import resolve_model

print(resolve_model("random:tiny"))
dist.barrier()
"""


@pytest.mark.slow
def test_random_model_built_by_several_ranks_at_once_is_complete(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cache = tmp_path / "cache"
    env = {**os.environ, "OPEN_GRPO_CACHE": str(cache), "PYTHONPATH": SRC}
    world = 3
    init = f"file://{tmp_path / 'rendezvous'}"
    ranks = [
        subprocess.Popen([sys.executable, "-c", RANK_MAIN, str(r), str(world), init], env=env, stdout=subprocess.PIPE)
        for r in range(world)
    ]
    paths = {p.communicate(timeout=400)[0].decode().strip() for p in ranks}
    assert [p.returncode for p in ranks] == [0] * world
    assert paths == {str(cache / "random-qwen2-tiny")}
    folder = cache / "random-qwen2-tiny"
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    assert torch.equal(model.model.embed_tokens.weight, weights["model.embed_tokens.weight"])
    assert not [p.name for p in cache.iterdir() if "tmp" in p.name]  # no build folders left behind


@pytest.mark.slow
def test_an_incomplete_cached_model_is_rebuilt(tmp_path, monkeypatch):
    """A folder without weights (what a rank other than 0 could publish before) is replaced by a complete one."""
    from open_grpo.data.tiny_model import qwen_tokenizer

    monkeypatch.setenv("OPEN_GRPO_CACHE", str(tmp_path))
    qwen_tokenizer().save_pretrained(tmp_path / "random-qwen2-tiny")
    folder = Path(resolve_model("random:tiny"))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
