"""One call: start the child, feed it, read it with bounds, kill its process group, judge the outcome in the parent.

The child (child.py) gets a header on stdin before the program's stdin: the code, the files, the limits, the seccomp
filter and a fresh random nonce. It reports on a pipe of its own ("ready" once set up, the nonce once the code ran
to its end); stdout and stderr are read as they come, each kept up to `output_bytes`, and a call that writes more is
killed. At the wall-clock limit, or as soon as the child has exited, the parent sends SIGKILL to the child's whole
process group: nothing the code started outlives the call.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import selectors
import signal
import subprocess
import time
from collections.abc import Callable

from open_grpo.sandbox.backends import Launch
from open_grpo.sandbox.limits import Limits, RunResult

READ_CHUNK = 1 << 16
POLL_S = 0.01  # how often the exit is polled where pidfd_open is missing (Linux < 5.3)
REPORT_CAP = 4096
KILL_GRACE_S = 1.0  # how long bwrap may take to reap its killed child before it is killed too
EXIT_GRACE_S = 1.0  # after the child exits: how long its pipes may stay open (held by a process that escaped)


def run_child(
    launch: Launch,
    limits: Limits,
    code: str,
    stdin: str,
    files: dict[str, str],
    seccomp_for: Callable[[int], bytes | None],
) -> RunResult:
    """Run `code` once in a fresh child. `seccomp_for(pid)` builds the filter (bytes, or None for none)."""
    start = time.monotonic()
    deadline = start + limits.wall_s
    report_r, report_w = os.pipe()
    try:
        proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=launch.cwd,
            env=launch.env,
            pass_fds=(report_w,),
            start_new_session=True,  # its own process group, killed as a whole
        )
    except OSError as e:
        os.close(report_r)
        os.close(report_w)
        return RunResult(stderr=f"sandbox: cannot start {launch.argv[0]}: {e}", killed_reason="sandbox")
    os.close(report_w)
    nonce = secrets.token_hex(16)
    program = seccomp_for(proc.pid)
    header = json.dumps(
        {
            "code": code,
            "files": files,
            "nonce": nonce,
            "report_fd": report_w,
            "limits": {
                k: getattr(limits, k) for k in ("cpu_s", "memory_mb", "file_size_mb", "processes", "open_files")
            },
            "seccomp": base64.b64encode(program).decode() if program else None,
        }
    ).encode()
    feed = b"%d\n%s%s" % (len(header), header, stdin.encode())
    reader = _Reader(proc, report_r, feed, limits.output_bytes)
    try:
        reason = reader.pump(deadline)
    finally:
        _stop(proc.pid, launch.monitor)
        cpu_s = _reap(proc)
        reader.close()
    report = reader.buffers["report"].decode(errors="replace").split("\n")
    exit_code = proc.returncode
    if launch.exit_signal_offset and launch.exit_signal_offset < exit_code <= launch.exit_signal_offset + 64:
        exit_code = launch.exit_signal_offset - exit_code
    # SIGXCPU at the soft limit; SIGKILL at the hard one (bwrap: the namespace's first process ignores SIGXCPU)
    if reason is None and (exit_code == -signal.SIGXCPU or (exit_code == -signal.SIGKILL and cpu_s >= limits.cpu_s)):
        reason = "cpu_time"
    started = report[0] == "ready"
    if reason is None and not started:  # bwrap or the child's set-up failed before the code ran
        reason = "sandbox"
    return RunResult(
        stdout=reader.text("stdout"),
        stderr=reader.text("stderr"),
        exit_code=None if reason in ("wall_time", "output_limit") else exit_code,
        timed_out=reason == "wall_time",
        killed_reason=reason,
        wall_s=time.monotonic() - start,
        nonce_seen=started and nonce in report[1:],
    )


class _Reader:
    """Feeds the child's stdin and reads its stdout, stderr and report pipe until it is done or must be killed."""

    def __init__(self, proc: subprocess.Popen, report_fd: int, feed: bytes, cap: int):
        self.proc, self.cap, self.feed = proc, cap, memoryview(feed)
        self.buffers = {"stdout": bytearray(), "stderr": bytearray(), "report": bytearray()}
        self.received = dict.fromkeys(self.buffers, 0)
        self.selector = selectors.DefaultSelector()
        for name, fd in (("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno()), ("report", report_fd)):
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, name)
        self.report_fd = report_fd
        self.stdin_fd = proc.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        self.selector.register(self.stdin_fd, selectors.EVENT_WRITE, "stdin")
        self.pidfd = _pidfd(proc.pid)
        if self.pidfd is not None:
            self.selector.register(self.pidfd, selectors.EVENT_READ, "exit")

    def pump(self, deadline: float) -> str | None:
        """Move bytes until the child exits (then its group is killed) or a limit is hit; the limit's name, or None."""
        exited = False
        while True:
            if not exited and _exited(self.proc.pid):
                exited = True
                _kill_group(self.proc.pid)  # what it left behind would hold the pipes open
                deadline = min(deadline, time.monotonic() + EXIT_GRACE_S)
            readers = [k for k in self.selector.get_map().values() if k.data in self.buffers]
            if exited and not readers:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None if exited else "wall_time"
            timeout = remaining if self.pidfd is not None or exited else min(remaining, POLL_S)
            for key, _ in self.selector.select(timeout):
                if key.data == "exit":
                    self.selector.unregister(key.fd)
                elif key.data == "stdin":
                    self._write()
                elif self._read(key.fd, key.data):
                    return "output_limit"

    def _write(self) -> None:
        try:
            sent = os.write(self.stdin_fd, self.feed[:READ_CHUNK])
            self.feed = self.feed[sent:]
        except BlockingIOError:
            return
        except OSError:  # the child stopped reading (BrokenPipe) or died
            self.feed = self.feed[:0]
        if not self.feed:
            self.selector.unregister(self.stdin_fd)
            self.proc.stdin.close()

    def _read(self, fd: int, name: str) -> bool:
        """Read what is there; True when the stream went over its cap."""
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            self.selector.unregister(fd)
            return False
        buffer = self.buffers[name]
        cap = REPORT_CAP if name == "report" else self.cap
        buffer += chunk[: max(0, cap - len(buffer))]
        self.received[name] += len(chunk)
        return name != "report" and self.received[name] > cap

    def text(self, name: str) -> str:
        return self.buffers[name].decode(errors="replace")

    def close(self) -> None:
        self.selector.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()
        os.close(self.report_fd)
        if self.pidfd is not None:
            os.close(self.pidfd)


def _reap(proc: subprocess.Popen) -> float:
    """Wait for the child; the CPU seconds it and the descendants it waited for used."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _exited(pid: int) -> bool:
    """Has the child exited? It stays a zombie (not reaped), so its process group id cannot be reused yet."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _stop(pid: int, monitor: bool) -> None:
    """End the call: its whole process group. Under bwrap (`monitor`) first the namespace's first process, whose end
    ends every process in the namespace, so that bwrap reaps it rather than leave it to the host's init."""
    if monitor and not _exited(pid):
        for child in _children(pid):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        give_up = time.monotonic() + KILL_GRACE_S
        while not _exited(pid) and time.monotonic() < give_up:
            time.sleep(0.001)
    _kill_group(pid)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: look for them
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the command name in parentheses
                found.append(int(entry))
    return found


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
