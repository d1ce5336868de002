"""`judge`: an LLM judge over an OpenAI-compatible endpoint, against a stub server on 127.0.0.1."""

import json
import socket
import threading
import time

import pytest

from open_grpo.errors import RecipeError
from open_grpo.rewards.judge import parse_score
from open_grpo.rewards.registry import RewardSpecError, build_rewards, parse_reward_specs
from tests.support.judge_stub import JudgeStub

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """The stub is on 127.0.0.1: a proxy from the environment (httpx honours it) must not stand in between."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _judge(stub, on_error="none", **params):
    entry = {"name": "judge", "base_url": stub.base_url, "model": "judge-model", "retry_backoff": 0.01, **params}
    (reward,), _ = build_rewards(parse_reward_specs([{**entry, "on_error": on_error}]))
    return reward


def _score(reward, texts, solution="4"):
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    return reward(completions, prompts=[PROMPT] * len(texts), solution=[solution] * len(texts))


@pytest.mark.parametrize(
    "reply, score",
    [("Score: 7", 0.7), ("**Score:** 8/10", 0.8), ("7", 0.7), ("score = 7.5", 0.75), ("Score: 3. Final score: 9", 0.9),
     ("I rate it 7", None), ("Score: 11", None), ("Score: -1", None), ("", None)],
)  # fmt: skip
def test_parse_score(reply, score):
    assert parse_score(reply, 0, 10) == score


def test_scores_the_batch_and_sends_prompt_completion_solution(monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "secret-123")
    with JudgeStub() as stub:
        reward = _judge(stub, api_key_env="TEST_JUDGE_KEY")
        assert _score(reward, ["GOOD four", "plain"]) == [0.8, 0.5]
    assert sorted(b["messages"][0]["content"].count("What is 2 + 2?") for b in stub.bodies) == [1, 1]
    assert any("GOOD four" in b["messages"][0]["content"] and "Reference answer:\n4" in b["messages"][0]["content"]
               for b in stub.bodies)  # fmt: skip
    assert all(b["model"] == "judge-model" and b["temperature"] == 0.0 for b in stub.bodies)
    assert all(h["Authorization"] == "Bearer secret-123" for h in stub.headers)
    assert reward.pop_stats() == {"rewards/judge/errors": 0, "rewards/judge/timeouts": 0, "rewards/judge/none_frac": 0}


def test_custom_template_and_range():
    with JudgeStub() as stub:
        reward = _judge(stub, prompt_template="Q: {prompt}\nA: {completion}", min_score=-10, max_score=10)
        assert _score(reward, ["GOOD"]) == [0.9]  # 8 on [-10, 10]
    assert stub.bodies[0]["messages"][0]["content"] == "Q: What is 2 + 2?\nA: GOOD"


def test_malformed_and_out_of_range_scores_are_none_and_errors():
    with JudgeStub() as stub:
        reward = _judge(stub, on_error="zero")
        assert _score(reward, ["MALFORMED", "RANGE", "GOOD"]) == [0.0, 0.0, 0.8]  # on_error: zero maps None to 0
        assert reward.pop_stats()["rewards/judge/errors"] == 2


def test_a_slow_reply_times_out_alone():
    with JudgeStub(slow_s=3.0) as stub:
        reward = _judge(stub, request_timeout=0.5, max_retries=0)
        assert _score(reward, ["SLOW", "GOOD"]) == [None, 0.8]
        stats = reward.pop_stats()
    assert (stats["rewards/judge/timeouts"], stats["rewards/judge/errors"], stats["rewards/judge/none_frac"]) == (
        1,
        0,
        0.5,
    )


def test_server_errors_are_retried_then_succeed():
    with JudgeStub(flaky_failures=2) as stub:
        reward = _judge(stub, max_retries=3)
        assert _score(reward, ["FLAKY"]) == [1.0]
    assert len(stub.bodies) == 3  # two HTTP 500s, then the answer


def test_a_call_whose_every_request_fails_follows_on_error():
    with JudgeStub(flaky_failures=100) as stub:
        assert _score(_judge(stub, max_retries=1), ["FLAKY", "FLAKY"]) == [None, None]
        assert len(stub.bodies) == 4  # each tried twice
        reward = _judge(stub, max_retries=0)
        _score(reward, ["FLAKY"])
        assert reward.pop_stats()["rewards/judge/errors"] == 1
        with pytest.raises(RuntimeError, match=r"all 1 requests to the judge at .* failed; the first: HTTP 500"):
            _score(_judge(stub, on_error="raise", max_retries=0), ["FLAKY"])


def test_concurrency_bound_respected():
    with JudgeStub(gated=True) as stub:
        reward = _judge(stub, max_concurrency=3)
        result = {}
        call = threading.Thread(target=lambda: result.update(scores=_score(reward, [f"GOOD {i}" for i in range(12)])))
        call.start()
        with stub.changed:
            assert stub.changed.wait_for(lambda: stub.in_flight == 3, timeout=10)
        time.sleep(0.3)  # a client without the bound sends more requests meanwhile (a correct one never does)
        assert stub.in_flight == 3
        stub.gate.set()
        call.join(timeout=10)
    assert result["scores"] == [0.8] * 12 and stub.max_in_flight == 3


def test_recipe_checks_said_together():
    entry = {"name": "judge", "base_url": "localhost:8000", "model": "", "api_key_env": "sk-abc123",
             "prompt_template": "Grade {answer}", "min_score": 10, "max_score": 0, "max_concurrency": 0}  # fmt: skip
    with pytest.raises(RewardSpecError) as e:
        parse_reward_specs([entry])
    text = "\n".join(e.value.problems)
    for expected in ("'base_url' must be an http(s) URL", "'model' must name the model", "unknown placeholders ['answer']",
                     "must contain {completion}", "NAME of an environment variable", "'min_score' must be below",
                     "'max_concurrency' must be an integer >= 1"):  # fmt: skip
        assert expected in text, expected
    with pytest.raises(RewardSpecError, match="parameter 'model' is required"):
        parse_reward_specs([{"name": "judge", "base_url": "http://h:1/v1"}])
    with pytest.raises(RewardSpecError, match="unknown parameter 'api_key'. Did you mean 'api_key_env'"):
        parse_reward_specs([{"name": "judge", "base_url": "http://h:1/v1", "model": "m", "api_key": "sk-x"}])


def test_start_up_checks(monkeypatch):
    monkeypatch.delenv("TEST_JUDGE_KEY", raising=False)
    with JudgeStub(models=["other-model"]) as stub:
        with pytest.raises(RecipeError, match=r"serves \['other-model'\], not model 'judge-model'"):
            _judge(stub)
        with pytest.raises(RecipeError, match="api_key_env names 'TEST_JUDGE_KEY', which is not set"):
            _judge(stub, api_key_env="TEST_JUDGE_KEY")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RecipeError, match=rf"does not answer at http://127.0.0.1:{port}/v1/models"):
        build_rewards(parse_reward_specs([{"name": "judge", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m"}]))


@pytest.mark.slow
def test_cpu_grpo_run_with_a_judge(write_recipe, tmp_path):
    """The trainer hands the judge each chat prompt, completion and solution; its scores are logged under its name."""
    from open_grpo.train import main

    with JudgeStub() as stub:
        judge = {"name": "judge", "base_url": stub.base_url, "model": "judge-model", "weight": 0.5}
        main(str(write_recipe({"max_steps": 1, "dataset_size": 8, "rewards": [{"name": "lowercase_letters"}, judge]})))
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    (step,) = [r for r in rows if "reward" in r]
    assert step["rewards/judge/mean"] == 0.5 and step["rewards/judge/errors"] == 0  # the stub's "Score: 5"
    assert len(stub.bodies) == 8  # one request per completion
    texts = [b["messages"][0]["content"] for b in stub.bodies]
    assert all("Question:\n\n" not in t and "Reference answer:\n\n" not in t for t in texts)  # prompt, solution there
