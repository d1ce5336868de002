"""The colocated engine's steps, timed and watched: per-call step times (median, max) for the logs, and a watchdog
for a step that never ends.

vLLM's `LLM.generate` runs `llm_engine.step()` until every request is finished; one step is one decode step of the
batch (a few ms at the bench shape: docs/PERFORMANCE.md). vLLM issue #48229 reports, for the multiprocess engine
(vLLM 0.24, V1), a rare step frozen for 0.7-2 s about once per generate call, absent with
`VLLM_ENABLE_V1_MULTIPROCESSING=0`; so each call's slowest step is logged next to its median
(`engine/step_ms_max`, `engine/step_ms_median`, `engine/slow_steps`: steps over SLOW_STEP_S).

A step that runs past `vllm_engine_step_timeout_s` is a hang, not an outlier: the watchdog logs every thread's stack
(faulthandler) and, for an engine in its own process, puts an error into the queue the trainer's thread is blocked
on (vLLM's `SyncMPClient.outputs_queue`, which `get_output` raises from), so the run stops with a message instead of
waiting forever. An in-process engine's step runs in the trainer's own thread and can only be reported.
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import statistics
import sys
import threading
import time
import traceback

logger = logging.getLogger(__name__)

SLOW_STEP_S = 0.25  # decode steps take 2-4 ms and prefill chunks tens of ms at the bench shape: this is a stall


class EngineStepTimeout(RuntimeError):
    pass


class StepWatch:
    """Times the steps wrapped by `wrap`; `pop()` returns the metrics of the steps since the last call. A daemon
    thread calls `on_timeout(seconds)` once per step that runs longer than `timeout_s` (0: no thread)."""

    def __init__(self, timeout_s: float = 0.0, on_timeout=None, poll_s: float | None = None, clock=time.perf_counter):
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self.clock = clock
        self.durations: list[float] = []
        self._started: float | None = None
        self._fired = False
        self._lock = threading.Lock()
        if timeout_s > 0:
            poll = poll_s if poll_s is not None else min(1.0, timeout_s / 4)
            threading.Thread(target=self._watch, args=(poll,), daemon=True, name="open-grpo-step-watch").start()

    def wrap(self, step):
        @functools.wraps(step)
        def timed(*args, **kwargs):
            with self._lock:
                self._started, self._fired = self.clock(), False
            try:
                return step(*args, **kwargs)
            finally:
                with self._lock:
                    self.durations.append(self.clock() - self._started)
                    self._started = None

        return timed

    def pop(self) -> dict[str, float]:
        """`engine/*` metrics of the steps since the last call ({} if none ran)."""
        with self._lock:
            steps, self.durations = self.durations, []
        if not steps:
            return {}
        return {
            "engine/steps": float(len(steps)),
            "engine/step_ms_median": 1e3 * statistics.median(steps),
            "engine/step_ms_max": 1e3 * max(steps),
            "engine/slow_steps": float(sum(s > SLOW_STEP_S for s in steps)),
        }

    def _watch(self, poll_s: float) -> None:
        while True:
            time.sleep(poll_s)
            self.check()

    def check(self) -> bool:
        """Whether the running step is over the limit (reported once per step: log, stacks, `on_timeout`)."""
        with self._lock:
            if self._started is None or self._fired:
                return False
            elapsed = self.clock() - self._started
            if elapsed <= self.timeout_s:
                return False
            self._fired = True
        logger.error("vLLM engine step running for %.0f s (vllm_engine_step_timeout_s %.0f): every thread's "
                     "stack follows", elapsed, self.timeout_s)  # fmt: skip
        try:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        except (AttributeError, OSError, ValueError):  # a stderr without a file descriptor (captured)
            for frame in sys._current_frames().values():
                logger.error("".join(traceback.format_stack(frame)))
        if self.on_timeout is not None:
            self.on_timeout(elapsed)
        return True


def raise_in_client(llm):
    """For an engine in its own process: a function that makes the trainer's blocked `get_output` raise."""
    queue = getattr(getattr(llm.llm_engine, "engine_core", None), "outputs_queue", None)
    if queue is None:
        return None

    def stop(elapsed: float) -> None:
        queue.put_nowait(
            EngineStepTimeout(
                f"a vLLM engine step ran {elapsed:.0f} s (vllm_engine_step_timeout_s): the engine process is stuck "
                "(vLLM issue #48229 reports frozen steps in multiprocess mode). Raise the limit, or run with "
                "vllm_engine_process: in_process"
            )
        )

    return stop


def watch(llm, timeout_s: float, own_process: bool) -> StepWatch | None:
    """Time (and watch) `llm`'s engine steps; None for an engine without `llm_engine.step` (the CPU double)."""
    engine = getattr(llm, "llm_engine", None)
    if engine is None or not callable(getattr(engine, "step", None)):
        return None
    sw = StepWatch(timeout_s, raise_in_client(llm) if own_process else None)
    engine.step = sw.wrap(engine.step)
    return sw
