"""`Sandbox`: runs untrusted Python code in a fresh child per call, on a backend, with limits, over a worker pool."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from open_grpo.sandbox import seccomp
from open_grpo.sandbox.backends import BwrapBackend, ProcessBackend, SandboxUnavailable
from open_grpo.sandbox.canary import canary_problems
from open_grpo.sandbox.limits import Limits, RunResult
from open_grpo.sandbox.runner import run_child

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "bwrap", "process")
MAIN_FILE = "main.py"
ROOT = os.geteuid() == 0  # Linux does not apply RLIMIT_NPROC to root: its children may not fork (seccomp.py)
PROCESS_DOES_NOT_ISOLATE = (
    "the filesystem (the code reads and writes whatever your user can: the run's files, $HOME), other processes' "
    "/proc entries, the host's process table"
)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def settings_problems(backend: str, limits: Limits, workers: int | None) -> list[str]:
    """What no sandbox can be made with, one line each."""
    problems = (
        [] if backend in BACKENDS else [f"sandbox 'backend' must be one of {', '.join(BACKENDS)}, got {backend!r}"]
    )
    problems += limits.problems()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        problems.append(f"sandbox 'workers' must be a whole number >= 1 (null: one per CPU), got {workers!r}")
    return problems


class Sandbox:
    """Run code in a fresh, isolated child per call.

        sb = Sandbox(backend="auto", limits=Limits(wall_s=5.0), workers=8)
        r = sb.run("print(input())", stdin="hi")            # RunResult(stdout='hi\\n', ok=True, ...)
        results = sb.run_many([(code, stdin), ...])          # in parallel, in order

    `backend`: 'bwrap' (namespaces; refuses to start without a bwrap binary), 'process' (a plain child with limits
    and the seccomp filter; `describe()` says what it does not isolate), or 'auto' (bwrap where its canary holds,
    else 'process' with a warning). `workers`: calls run at once by `run_many` (default: this machine's CPUs).
    """

    def __init__(self, backend: str = "auto", limits: Limits | None = None, workers: int | None = None):
        self.limits = limits if limits is not None else Limits()
        problems = settings_problems(backend, self.limits, workers)
        if problems:
            raise ValueError("; ".join(problems))
        self.workers = workers or default_workers()
        self.arch = seccomp.machine()
        self.requested = backend
        self.fallback_reason: str | None = None  # 'auto' chose 'process': why bwrap was not used
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._canary: list[str] | None = None
        if backend == "process":
            self._backend = ProcessBackend()
        elif backend == "bwrap":
            self._backend = BwrapBackend()
        else:
            self._backend = self._choose()

    def _choose(self):
        try:
            self._backend = BwrapBackend()
            problems = self.canary()
        except SandboxUnavailable as e:
            problems = [str(e)]
        if not problems:
            return self._backend
        self.fallback_reason = "; ".join(problems)
        self._canary = None
        logger.warning(
            "sandbox: bwrap isolation does not hold here (%s); using the 'process' backend, which does not isolate %s",
            self.fallback_reason,
            PROCESS_DOES_NOT_ISOLATE,
        )
        return ProcessBackend()

    @property
    def backend(self) -> str:
        """The backend in use: 'bwrap' or 'process'."""
        return self._backend.name

    def _seccomp_for(self, pid: int) -> bytes | None:
        if self.arch is None:
            return None
        own_pid = pid if self.backend == "process" else None
        return seccomp.build_filter(self.arch, own_pid=own_pid, allow_fork=not ROOT)

    def run(self, code: str, stdin: str = "", files: dict[str, str] | None = None) -> RunResult:
        """Run `code` as `__main__` in a fresh child, `stdin` on its standard input, `files` (relative path -> text)
        in its working directory. Never raises for anything the code does."""
        files = dict(files or {})
        bad = [name for name in files if not _safe_name(name)]
        if bad:
            raise ValueError(f"sandbox files must be relative paths without '..' and not {MAIN_FILE!r}, got {bad}")
        with self._backend.launch(self.limits) as launch:
            return run_child(launch, self.limits, code, stdin, files, self._seccomp_for)

    def run_many(self, items: Iterable[Sequence]) -> list[RunResult]:
        """Run each `(code, stdin)` (or `(code, stdin, files)`, or `(code,)`) over the worker pool; results in order."""
        items = [tuple(item) for item in items]
        if len(items) <= 1:
            return [self.run(*item) for item in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
            pool = self._pool
        return list(pool.map(lambda item: self.run(*item), items))

    def canary(self) -> list[str]:
        """What this backend promises that does not hold here, one line each; empty when everything holds."""
        if self._canary is None:
            self._canary = canary_problems(self)
        return list(self._canary)

    def describe(self) -> str:
        """One line: the backend and what it does and does not isolate."""
        limits = self.limits
        processes = f"{limits.processes} processes"
        if ROOT:
            processes = "threads but no new processes (as root, whom RLIMIT_NPROC does not bound)"
        bounds = (
            f"per call: {limits.wall_s:g} s wall clock (the whole process group is killed), {limits.cpu_s:g} s CPU, "
            f"{limits.memory_mb} MiB memory, {limits.file_size_mb} MiB files, {processes}, "
            f"{limits.open_files} open files, {limits.output_bytes} bytes of output"
        )
        filtered = f"seccomp deny-list ({self.arch})" if self.arch else "NO seccomp filter (unsupported machine)"
        if self.backend == "bwrap":
            return (
                f"bwrap ({self._backend.bwrap}, from {self._backend.source}): a fresh child per call in its own user, "
                "pid, network, ipc and mount namespaces as uid 65534 without capabilities; no network; read-only "
                f"system and Python; a private /tmp; no other host files or processes visible; {filtered}; {bounds}"
            )
        if self.arch:
            reach = (
                f"{filtered}: no network (sockets other than unix are refused), no signals or ptrace outside its group"
            )
        else:
            reach = f"{filtered}: the NETWORK and the trainer's processes are reachable"
        return (
            f"process: a fresh child per call in its own process group, stdlib-only Python, a cleared environment; "
            f"{reach}; {bounds}. It does NOT isolate {PROCESS_DOES_NOT_ISOLATE}"
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _safe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and name != MAIN_FILE and "" not in parts
