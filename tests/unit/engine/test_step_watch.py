"""The engine steps' timer and watchdog (engine/step_watch.py), with a clock the test moves."""

import queue
from types import SimpleNamespace

import pytest

from open_grpo.engine.step_watch import EngineStepTimeout, StepWatch, raise_in_client, watch


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_each_calls_steps_reported_median_max_and_slow():
    clock = Clock()
    sw = StepWatch(clock=clock)

    def step(seconds):
        clock.now += seconds
        return seconds

    timed = sw.wrap(step)
    for s in [0.002] * 9 + [0.9]:  # one frozen step (vLLM issue #48229) among ordinary decode steps
        timed(s)
    got = sw.pop()
    assert got["engine/steps"] == 10 and got["engine/slow_steps"] == 1
    assert got["engine/step_ms_median"] == pytest.approx(2.0) and got["engine/step_ms_max"] == pytest.approx(900)
    assert sw.pop() == {}  # the next call starts afresh


def test_a_hung_step_is_reported_once_and_raised_in_the_client():
    clock, fired = Clock(), []
    sw = StepWatch(timeout_s=60, on_timeout=fired.append, clock=clock)
    assert not sw.check()  # no step running
    sw._started = clock.now  # a step starts ... and never returns
    clock.now = 30
    assert not sw.check()
    clock.now = 61
    assert sw.check() and fired == [61]
    clock.now = 500
    assert not sw.check() and fired == [61]  # once per step

    outputs = queue.Queue()  # vLLM's SyncMPClient.outputs_queue, which get_output() raises from
    llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=SimpleNamespace(outputs_queue=outputs)))
    raise_in_client(llm)(61.0)
    error = outputs.get_nowait()
    assert isinstance(error, EngineStepTimeout) and "vllm_engine_step_timeout_s" in str(error)
    assert raise_in_client(SimpleNamespace(llm_engine=SimpleNamespace())) is None  # in-process: nothing to raise into


def test_watch_wraps_the_engines_step():
    engine = SimpleNamespace(step=lambda: ["out"])
    sw = watch(SimpleNamespace(llm_engine=engine), timeout_s=0, own_process=False)
    assert engine.step() == ["out"] and sw.pop()["engine/steps"] == 1
    assert watch(SimpleNamespace(llm_engine=SimpleNamespace()), 0, False) is None  # the CPU double has no step
