"""The reward registry: entry points, errors at start-up, recipe parameters, on_error and counters."""

from importlib.metadata import EntryPoint

import pytest

from open_grpo.rewards import registry
from open_grpo.rewards.registry import RewardSpecError, ScoredReward, build_rewards, load_reward, parse_reward_specs

BUILTINS = {
    "accuracy",
    "format",
    "tag_count",
    "reasoning_steps",
    "length",
    "cosine",
    "repetition_penalty",
    "soft_overlong",
}


def test_builtins_come_from_entry_points():
    assert BUILTINS <= set(registry.reward_names())
    assert load_reward("accuracy").distribution == "open-grpo"
    assert load_reward("cosine").params["max_len"] == 1000
    assert load_reward("accuracy") is load_reward("accuracy")  # idempotent


def test_unknown_name_suggests():
    with pytest.raises(RewardSpecError, match=r"Unknown reward 'acuracy'\. Did you mean 'accuracy'\? Available: "):
        parse_reward_specs([{"name": "acuracy"}])


def test_parameters_checked_against_signature():
    specs = parse_reward_specs([{"name": "cosine", "weight": 0.5, "max_len": 500}])
    assert specs[0].params == {"max_len": 500} and specs[0].weight == 0.5
    with pytest.raises(RewardSpecError, match="unknown parameter 'max_lenght'. Did you mean 'max_len'"):
        parse_reward_specs([{"name": "cosine", "max_lenght": 500}])
    with pytest.raises(RewardSpecError, match="'max_len' must be like its default"):
        parse_reward_specs([{"name": "cosine", "max_len": "long"}])
    with pytest.raises(RewardSpecError, match="'on_error' must be one of"):
        parse_reward_specs([{"name": "format", "on_error": "ignore"}])


def test_seed_form():
    specs = parse_reward_specs(None, ["accuracy", "format"], [1.0, 0.5])
    assert [(s.name, s.weight) for s in specs] == [("accuracy", 1.0), ("format", 0.5)]


@pytest.fixture
def fake_entry_points(monkeypatch):
    def install(rows):
        found = {}
        for name, dist, value in rows:
            found.setdefault(name, []).append((dist, EntryPoint(name, value, registry.GROUP)))
        monkeypatch.setattr(registry, "_entry_points", found)
        monkeypatch.setattr(registry, "_loaded", {})

    return install


def test_same_name_from_two_distributions(fake_entry_points):
    fake_entry_points([("dup", "pkg-a", "json:dumps"), ("dup", "pkg-b", "json:loads")])
    with pytest.raises(RewardSpecError, match="'dup' is registered by two distributions: 'pkg-a'.*and 'pkg-b'"):
        load_reward("dup")


def test_plugin_import_failure_names_plugin_and_cause(fake_entry_points):
    fake_entry_points([("broken", "pkg-x", "no_such_module_xyz:reward")])
    with pytest.raises(RewardSpecError, match="'broken'.*pkg-x.*failed to import: ModuleNotFoundError"):
        load_reward("broken")


def test_plugin_not_callable(fake_entry_points):
    fake_entry_points([("notfn", "pkg-y", "math:pi")])
    with pytest.raises(RewardSpecError, match="not callable"):
        load_reward("notfn")


def _raising(completions, **columns):
    raise RuntimeError("verifier exploded")


@pytest.mark.parametrize("on_error,expected", [("none", [None, None]), ("zero", [0.0, 0.0])])
def test_on_error_none_and_zero(monkeypatch, on_error, expected):
    spec = registry.RewardSpec(name="format", on_error=on_error)
    reward = ScoredReward(spec)
    reward.func = _raising
    assert reward(["a", "b"]) == expected
    stats = reward.pop_stats()
    assert stats["rewards/format/errors"] == 2
    assert stats["rewards/format/none_frac"] == (1.0 if on_error == "none" else 0.0)


def test_on_error_raise():
    reward = ScoredReward(registry.RewardSpec(name="format", on_error="raise"))
    reward.func = _raising
    with pytest.raises(RuntimeError, match="exploded"):
        reward(["a"])


def test_wrong_return_shape_is_an_error():
    reward = ScoredReward(registry.RewardSpec(name="format"))
    reward.func = lambda completions, **kw: [1.0]
    assert reward(["a", "b"]) == [None, None]
    assert reward.pop_stats()["rewards/format/errors"] == 2


def test_timeouts_counted():
    rewards, weights = build_rewards(parse_reward_specs([{"name": "accuracy", "timeout": 1.0, "weight": 2}]))
    out = rewards[0]([r"\boxed{5^{5^{5^{5^{5^{5}}}}}}", r"\boxed{2}"], solution=["3", "2"])
    assert out == [None, 1.0] and weights == [2.0]
    stats = rewards[0].pop_stats()
    assert stats["rewards/accuracy/timeouts"] == 1 and stats["rewards/accuracy/none_frac"] == 0.5
    assert rewards[0].__name__ == "accuracy"
