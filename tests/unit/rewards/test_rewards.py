"""Built-in rewards: open-r1's published cases, the contract, and every built-in on bad inputs."""

import math

import pytest

from open_grpo.rewards.accuracy import accuracy
from open_grpo.rewards.demo import lowercase_letters
from open_grpo.rewards.format import format_reward, reasoning_steps, tag_count
from open_grpo.rewards.length import cosine, length, repetition_penalty, soft_overlong


def chat(text):
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------------------------- open-r1's cases


def test_accuracy_correct_and_wrong():
    assert accuracy([chat(r"\boxed{\frac{63}{400}}")], solution=[r"\frac{63}{400}"]) == [1.0]
    assert accuracy([chat(r"\boxed{\frac{64}{400}}")], solution=[r"\frac{63}{400}"]) == [0.0]


def test_accuracy_contract_example():
    assert accuracy([[{"role": "assistant", "content": r"\boxed{42}"}]], solution=["$42$"]) == [1.0]


def test_accuracy_answer_tag_and_content_blocks():
    blocks = [{"role": "assistant", "content": [{"type": "text", "text": "<think>x</think><answer>42</answer>"}]}]
    assert accuracy([blocks, "<answer>$\\frac{1}{2}$</answer>"], solution=["42", "0.5"]) == [1.0, 1.0]


def test_unparseable_gold_is_none_never_positive():
    assert accuracy([chat(r"\boxed{1}")], solution=[r"\frac{"]) == [None]
    assert cosine([chat(r"\boxed{1}")], solution=[r"\frac{"]) == [None]


def test_format():
    good = "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>"
    assert format_reward([chat(good)]) == [1.0]
    assert format_reward([chat("<think>Some reasoning</think><answer>The answer</answer>")]) == [1.0]  # no newlines
    bad = [
        "<think>\nSome reasoning\n</think>",
        "Some reasoning\n<answer>\nThe answer\n</answer>",
        "<think>\nSome reasoning\n<answer>\nThe answer\n</answer>",
        "<think>a</think><answer>b</answer><answer>c</answer>",
        "preamble <think>a</think><answer>b</answer>",
    ]
    assert format_reward([chat(b) for b in bad]) == [0.0] * len(bad)


def test_reasoning_steps():
    cases = {
        "Step 1: a\nStep 2: b\nStep 3: c": 1.0,
        "First, a\nSecond, b\nNext, c\nFinally, d": 1.0,
        "Step 1: a\nStep 2: b": 2 / 3,
        "1. a\n2. b": 1 / 3,  # as open-r1: a numbered line counts only at the very start (no re.MULTILINE)
        "plain text": 0.0,
    }
    got = reasoning_steps([chat(t) for t in cases])
    assert got == pytest.approx(list(cases.values()))


def test_tag_count():
    assert tag_count([chat("<think>\nx\n</think>\n<answer>\ny\n</answer>")]) == [1.0]
    assert tag_count([chat("<think>\nx\n</think>\n")]) == [0.5]
    assert tag_count([chat("nothing")]) == [0.0]


def test_length_kimi():
    completions = [chat(r"\boxed{20}"), chat(r"\boxed{20} longer longer")]
    assert length(completions, solution=["20", "20"]) == pytest.approx([0.5, -0.5])
    # wrong answers never earn a positive length reward
    assert length([chat(r"\boxed{19}"), chat(r"\boxed{20} longer longer")], solution=["20", "20"]) == pytest.approx(
        [0.0, -0.5]
    )


def test_cosine():
    # correct and short -> near max_value_correct; wrong and short -> near min_value_wrong
    correct, wrong = cosine([chat(r"\boxed{1}"), chat(r"\boxed{2}")], solution=["1", "1"], max_len=1000)
    assert correct == pytest.approx(1.0, abs=0.01) and wrong == pytest.approx(-1.0, abs=0.01)
    long_correct = cosine([chat(r"\boxed{1}" + "x" * 991)], solution=["1"], max_len=1000)[0]
    assert long_correct == pytest.approx(0.5, abs=0.01)


def test_repetition_penalty():
    assert repetition_penalty([chat("this is a test sentence")]) == [0.0]
    assert repetition_penalty([chat("a a a a a")]) == pytest.approx([-(1 - 1 / 3)])
    assert repetition_penalty([chat("")]) == [0.0]
    assert repetition_penalty([chat("a b c d a b c d")], ngram_size=4, max_penalty=-2.0) == pytest.approx(
        [-2 * (1 - 4 / 5)]
    )
    with pytest.raises(ValueError):
        repetition_penalty([chat("x")], max_penalty=1.0)


def test_soft_overlong():
    ids = [[0] * 5, [0] * 9, [0] * 12]
    assert soft_overlong([None] * 3, completion_ids=ids, max_completion_len=10, soft_punish_cache=4) == [
        0.0,
        -0.75,
        -1.0,
    ]
    assert soft_overlong(["x"]) == [None]  # no token ids: cannot score


def test_lowercase_letters():
    assert lowercase_letters(["abc", "ABC", "", chat("ab12")]) == [1.0, 0.0, 0.0, 0.5]


# ------------------------------------------------------------------------------------------- bad inputs, all


BAD = [None, "", 42, [], [{"role": "assistant"}], [{"role": "assistant", "content": None}], "x" * 1_000_000,
       "\ud800 lone surrogate \udfff", "<think><answer>", [{"role": "assistant", "content": [{"type": "image"}]}]]  # fmt: skip
ALL = [
    accuracy,
    format_reward,
    tag_count,
    reasoning_steps,
    length,
    cosine,
    repetition_penalty,
    soft_overlong,
    lowercase_letters,
]


@pytest.mark.parametrize("reward", ALL, ids=lambda f: f.__name__)
def test_one_value_per_completion_for_any_input(reward):
    values = reward(BAD, solution=["1"] * len(BAD), completion_ids=[[1, 2]] * len(BAD))
    assert len(values) == len(BAD)
    assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values)


@pytest.mark.parametrize("reward", [accuracy, length, cosine], ids=lambda f: f.__name__)
def test_empty_or_malformed_completion_is_scored_not_none(reward):
    values = reward(["", "no answer here"], solution=["1", "1"])
    assert None not in values
