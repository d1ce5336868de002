"""The math-verify pool never hangs: adversarial inputs return within their bound, from any thread or script."""

import subprocess
import sys
import threading
import time

import pytest

from open_grpo.bench.verifier_corpus import ADVERSARIAL
from open_grpo.rewards.accuracy import accuracy
from open_grpo.rewards.verifier import VerifierPool

TIMEOUT = 2.0
GOLDS = ["3125", r"\frac{1}{2}", "1", r"5^{5^{5^{5^5}}}"]


def _bounded_batch():
    completions = [f"<think>x</think>{a}" for a in ADVERSARIAL]
    solutions = [GOLDS[i % len(GOLDS)] for i in range(len(ADVERSARIAL))]
    start = time.monotonic()
    values = accuracy(completions, solution=solutions, timeout=TIMEOUT)
    return values, time.monotonic() - start


def test_adversarial_corpus_is_bounded():
    values, elapsed = _bounded_batch()
    assert len(values) == len(ADVERSARIAL)
    assert all(v in (None, 0.0, 1.0) for v in values)
    # every item is bounded by TIMEOUT; items run on parallel workers; plus worker restarts
    assert elapsed < len(ADVERSARIAL) * TIMEOUT + 30, elapsed


def test_each_item_within_its_bound():
    pool = VerifierPool(size=1)
    try:
        for answer in ADVERSARIAL[:3]:
            start = time.monotonic()
            outcome = pool.score([("3", answer, False)], timeout=TIMEOUT)[0]
            assert time.monotonic() - start < TIMEOUT + 1.0, answer[:40]
            assert outcome.status in ("ok", "timeout", "error")
    finally:
        pool.close()


def test_from_a_worker_thread():
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=_bounded_batch()))
    thread.start()
    thread.join(timeout=len(ADVERSARIAL) * TIMEOUT + 60)
    assert not thread.is_alive() and len(result["out"][0]) == len(ADVERSARIAL)


def test_from_a_script_read_from_stdin():
    script = (
        "from open_grpo.rewards.accuracy import accuracy\n"
        "print(accuracy([r'\\boxed{2}', r'\\boxed{5^{5^{5^{5^5}}}}'], solution=['2', '3'], timeout=2.0))\n"
    )
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1.0, None]"


@pytest.mark.parametrize("gold,answer,expected", [("42", r"\boxed{42}", 1.0), ("42", r"\boxed{41}", 0.0)])
def test_ordinary_items(gold, answer, expected):
    assert accuracy([answer], solution=[gold]) == [expected]
