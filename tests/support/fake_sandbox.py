"""A test double of `open_grpo.sandbox.Sandbox` (the API python_exec codes against): no code runs; each program's
result comes from `respond(program)`, and every program is recorded."""

from dataclasses import dataclass


@dataclass
class FakeRunResult:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    timed_out: bool = False
    killed_reason: str | None = None
    wall_s: float = 0.01

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.killed_reason


def scripted(program: str) -> FakeRunResult:
    """`print(6*7)` prints 42; a program with `raise` fails with a traceback; `while True` runs past its limit."""
    if "while True" in program:
        return FakeRunResult(exit_code=-9, timed_out=True, killed_reason="wall-clock limit")
    if "raise" in program:
        return FakeRunResult(stderr="Traceback (most recent call last):\nSystemExit: 3\n", exit_code=3)
    return FakeRunResult(stdout="42\n" if program.endswith("print(6*7)") else "")


class FakeSandbox:
    def __init__(self, respond=scripted):
        self.respond = respond
        self.programs: list[str] = []

    def run(self, code: str, stdin: str = "", files: dict | None = None) -> FakeRunResult:
        self.programs.append(code)
        return self.respond(code)


def install(monkeypatch, respond=scripted) -> FakeSandbox:
    """Every python_exec environment of this process runs its programs on one `FakeSandbox`."""
    from open_grpo.environments import python_exec

    sandbox = FakeSandbox(respond)
    monkeypatch.setattr(python_exec, "open_sandbox", lambda *args, **kwargs: sandbox)
    return sandbox
