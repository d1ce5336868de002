"""What one sandboxed run may use (`Limits`) and what it did (`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Per-call resource limits. The child sets them on itself (setrlimit) before the code runs, as hard limits it
    cannot raise; the parent enforces the wall clock and the output size."""

    wall_s: float = field(
        default=5.0, metadata={"help": "Wall-clock seconds for one call; then its whole process group is killed."}
    )
    cpu_s: float = field(default=5.0, metadata={"help": "CPU seconds (RLIMIT_CPU) of each process of the call."})
    memory_mb: int = field(
        default=512, metadata={"help": "Address space in MiB of each process (RLIMIT_AS): a larger allocation fails."}
    )
    file_size_mb: int = field(
        default=16,
        metadata={
            "help": "Largest file a call may write, in MiB (RLIMIT_FSIZE); under bwrap also the size of its private "
            "/tmp in all."
        },
    )
    processes: int = field(
        default=32,
        metadata={
            "help": "Processes and threads (RLIMIT_NPROC). Under bwrap counted inside the call's own user namespace; "
            "under the process backend counted over all processes of your user (and not enforced for root)."
        },
    )
    open_files: int = field(default=64, metadata={"help": "Open file descriptors per process (RLIMIT_NOFILE)."})
    output_bytes: int = field(
        default=65536,
        metadata={"help": "Bytes kept of stdout and of stderr each; a call that writes more is killed."},
    )

    def problems(self) -> list[str]:
        """Values no run can use, one line each (the field, the value, the constraint)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            number = (int, float) if f.type == "float" else (int,)
            if isinstance(value, bool) or not isinstance(value, number) or not value > 0:
                kind = "number" if f.type == "float" else "whole number"
                out.append(f"sandbox {f.name!r} must be a positive {kind} ({f.metadata['help']}), got {value!r}")
        if not out and self.open_files < 8:
            out.append(f"sandbox 'open_files' must be at least 8 (Python needs a few to start), got {self.open_files}")
        return out


LIMIT_KEYS = tuple(f.name for f in fields(Limits))


@dataclass(frozen=True)
class RunResult:
    """One call's outcome, judged in the parent. The child's own exit status is reported, never trusted alone."""

    stdout: str = field(default="", metadata={"help": "Standard output, cut to Limits.output_bytes."})
    stderr: str = field(default="", metadata={"help": "Standard error, cut to Limits.output_bytes."})
    exit_code: int | None = field(
        default=None,
        metadata={"help": "The program's exit status; -N when signal N ended it; None when the sandbox killed it."},
    )
    timed_out: bool = field(default=False, metadata={"help": "The wall-clock limit was reached and the call killed."})
    killed_reason: str | None = field(
        default=None,
        metadata={
            "help": "Why a limit stopped the call: 'wall_time', 'output_limit', 'cpu_time', 'file_size', 'sandbox' "
            "(the sandbox could not start it), or None."
        },
    )
    wall_s: float = field(default=0.0, metadata={"help": "Seconds from start to the end of the call."})
    nonce_seen: bool = field(
        default=False,
        metadata={
            "help": "The child reported this call's secret nonce, which it does only after the code ran to its end "
            "(os._exit, sys.exit and a crash never report it)."
        },
    )
    ok: bool = field(init=False, metadata={"help": "Clean exit 0, the nonce seen, no limit hit."})

    def __post_init__(self):
        clean = self.exit_code == 0 and self.nonce_seen and not self.timed_out and self.killed_reason is None
        object.__setattr__(self, "ok", clean)
