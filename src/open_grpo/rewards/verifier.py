"""A pool of math-verify worker processes with a hard wall-clock limit per item.

math-verify's own timeout uses SIGALRM: it only works on the main thread and cannot interrupt long C-level arithmetic
(power towers, deep nesting; even `str()` of a parsed result can hang). Here each item runs in a separate process;
when an item passes its limit the worker is killed and replaced, and the item scores None. Workers are plain
`python -c` subprocesses, so the pool works from threads, notebooks and scripts read from stdin alike.

A worker never imports from the working directory: a user's `math_verify.py` or `json.py` there would otherwise
shadow the real module and make every item score None. PYTHONPATH entries are kept.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0
# `python -c` puts '' (the working directory) first on sys.path: drop it before anything is imported (as `-P` does on
# Python >= 3.11), then make the parent's open_grpo importable (last, so it shadows nothing).
WORKER_BOOTSTRAP = (
    "import sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "sys.path.append(sys.argv.pop(1))\n"
    "from open_grpo.rewards.verify_worker import main\n"
    "main()\n"
)
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this open_grpo package


@dataclass
class Outcome:
    value: float | None
    status: str  # "ok", "error" or "timeout"
    error: str | None = None


class _Worker:
    def __init__(self, memory_mb: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_BOOTSTRAP, PACKAGE_ROOT, str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        )
        self._buffer = b""
        self._ready = False

    def wait_ready(self) -> None:
        if not self._ready:
            line = self._readline(STARTUP_TIMEOUT_S)
            if line is None or not json.loads(line).get("ready"):
                raise RuntimeError("math-verify worker failed to start (is math-verify installed?)")
            self._ready = True

    def _readline(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the worker died (e.g. killed by the memory limit)
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def ask(self, request: dict, timeout: float) -> Outcome:
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        line = self._readline(timeout)
        if line is None:
            return Outcome(None, "timeout" if self.proc.poll() is None else "error", "worker died or timed out")
        answer = json.loads(line)
        if answer["error"]:
            return Outcome(None, "error", answer["error"])
        return Outcome(answer["value"], "ok")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class VerifierPool:
    """`score(items, timeout)` -> one `Outcome` per (gold, answer, tagged) item, each bounded by `timeout` seconds."""

    def __init__(self, size: int | None = None, memory_mb: int = 2048):
        self.size = size or max(1, min(4, os.cpu_count() or 1))
        self.memory_mb = memory_mb
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> _Worker:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or worker.proc.poll() is not None:
            worker = _Worker(self.memory_mb)
        worker.wait_ready()  # start-up is not counted against an item's limit
        return worker

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed or len(self._idle) >= self.size:
                worker.kill()
            else:
                self._idle.append(worker)

    def warm_up(self) -> None:
        """Start every worker now (in parallel), so the first training step does not pay for it."""
        workers = [_Worker(self.memory_mb) for _ in range(self.size)]
        for w in workers:
            w.wait_ready()
            self._give(w)

    def _score_one(self, item: tuple[str, str, bool], timeout: float) -> Outcome:
        gold, answer, tagged = item
        worker = self._take()
        outcome = worker.ask({"gold": gold, "answer": answer, "tagged": tagged}, timeout)
        if outcome.status == "ok" or (outcome.status == "error" and worker.proc.poll() is None):
            self._give(worker)
        else:
            worker.kill()  # hung or dead: never reuse it
        return outcome

    def score(self, items: Sequence[tuple[str, str, bool]], timeout: float) -> list[Outcome]:
        if not items:
            return []
        if len(items) == 1:
            return [self._score_one(items[0], timeout)]
        with ThreadPoolExecutor(max_workers=min(self.size, len(items))) as ex:
            return list(ex.map(lambda item: self._score_one(item, timeout), items))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()


_pool: VerifierPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> VerifierPool:
    """The process-wide pool (created on first use, closed at exit)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            size = int(os.environ.get("OPEN_GRPO_VERIFY_WORKERS", 0)) or None
            _pool = VerifierPool(size=size)
            atexit.register(_pool.close)
        return _pool
