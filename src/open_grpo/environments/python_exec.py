"""`python_exec`: the model runs Python through the `run_python` tool, in open_grpo's sandbox, never in the trainer.

    environment: {name: python_exec, wall_s: 5.0, memory_mb: 512, max_output_chars: 2000}

Each call runs in a fresh sandboxed process (open_grpo.sandbox: time, memory and output limits). Within one rollout
(TRL resets the environment per rollout) definitions persist: the code of the earlier calls that succeeded runs
again first, its output discarded, so a function defined in one call can be used in the next. The model reads what the program printed, stdout then stderr,
each cut to `max_output_chars`, and how it ended when it did not exit 0. A call whose program fails (non-zero exit,
time or memory limit) counts in `tools/run_python/failure_rate`.
"""

from __future__ import annotations

import threading

from open_grpo.environments import ToolError

OUTPUT_BYTES = 65536  # what the sandbox keeps of each stream; the model sees at most max_output_chars of it
# Earlier calls re-run with their output discarded, as one line: the new code's line numbers are off by one at most.
REPLAY = (
    "import contextlib as _c, io as _io\n"
    "for _cell in {cells!r}:\n"
    "    with _c.redirect_stdout(_io.StringIO()), _c.redirect_stderr(_io.StringIO()):\n"
    "        exec(compile(_cell, '<earlier call>', 'exec'), globals())\n"
)


def replay_line(cells: list[str]) -> str:
    """One line of Python that runs `cells` in order, silently, in the program's globals."""
    return f"exec(compile({REPLAY.format(cells=cells)!r}, '<earlier calls>', 'exec'))\n"


_sandboxes: dict[tuple, object] = {}
_lock = threading.Lock()


def open_sandbox(backend: str, wall_s: float, memory_mb: int, workers: int):
    """One sandbox per process and set of limits, shared by every environment instance (TRL makes one per rollout)."""
    key = (backend, wall_s, memory_mb, workers)
    with _lock:
        if key not in _sandboxes:
            from open_grpo.sandbox import Limits, Sandbox, SandboxUnavailable

            limits = Limits(wall_s=wall_s, memory_mb=memory_mb, output_bytes=OUTPUT_BYTES)
            sandbox = Sandbox(backend=backend, limits=limits, workers=workers)
            problems = sandbox.canary()  # 'auto' ran it to choose; a backend named in the recipe must hold too
            if problems:
                raise SandboxUnavailable(f"sandbox ({sandbox.backend}): " + "; ".join(problems))
            _sandboxes[key] = sandbox
        return _sandboxes[key]


class PythonExec:
    """Python execution in the sandbox: the model calls run_python(code) and reads what the program printed."""

    def __init__(
        self,
        *,
        wall_s: float = 5.0,
        memory_mb: int = 512,
        max_output_chars: int = 2000,
        backend: str = "auto",
        workers: int = 1,
    ):
        self._sandbox = open_sandbox(backend, float(wall_s), int(memory_mb), int(workers))
        self._wall_s = wall_s
        self._max_chars = max_output_chars
        self._cells: list[str] = []  # this rollout's successful calls

    def reset(self, **row) -> None:
        """A new rollout: forget the earlier calls."""
        self._cells = []

    def run_python(self, code: str) -> str:
        """Run a Python 3 program and return what it printed (stdout, then stderr).

        Args:
            code: A complete Python program. Print the values you need. Functions and variables defined by your
                earlier successful calls in this conversation are available.
        """
        program = (replay_line(self._cells) if self._cells else "") + code
        result = self._sandbox.run(program)
        text = self._format(result)
        if not result.ok:
            return ToolError(text)
        self._cells.append(code)
        return text

    def _format(self, result) -> str:
        parts = []
        if result.stdout:
            parts.append(_head(result.stdout, self._max_chars))
        if result.stderr:
            parts.append("[stderr]\n" + _tail(result.stderr, self._max_chars))
        if result.timed_out:
            parts.append(f"[stopped: the program ran past the {self._wall_s:g} s limit]")
        elif result.killed_reason:
            parts.append(f"[stopped: {result.killed_reason}]")
        elif result.exit_code != 0:
            parts.append(f"[exit code {result.exit_code}]")
        return "\n".join(parts) or "(no output)"


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more characters]"


def _tail(text: str, limit: int) -> str:
    """The end of stderr: a traceback's last lines say what went wrong."""
    return text if len(text) <= limit else f"[{len(text) - limit} characters cut ...]\n" + text[-limit:]
