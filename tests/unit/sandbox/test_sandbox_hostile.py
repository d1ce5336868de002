"""A hostile corpus through the `code_tests` reward: each completion scores 0 within its limit, and the host is left
untouched (no file written outside, no process left behind, the parent alive, its secrets unread).

Every hostile snippet is followed by a correct solution, so it scores 1.0 unless the sandbox stops the attack. The
`process` backend does not isolate the filesystem (describe() says so): the file cases run on bwrap only, and a
test shows the process backend's write landing.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys

import pytest

from open_grpo.rewards.code_tests import code_tests
from open_grpo.sandbox import Limits, Sandbox, recipe
from tests.unit.sandbox.test_sandbox import BACKENDS

WALL_S = 2.0
MARGIN_S = 20.0  # generous: a busy machine, but never "waited for the program to give up"
SOLUTION = "\ndef double(x):\n    return 2 * x\n"
TESTS = {"test": "def check(f):\n    assert f(2) == 4\n    assert f(-3) == -6\n", "entry_point": "double"}
CHILD_MARKER = "The sandboxed child's first code"  # in the command line of every sandbox child (and bwrap)

HOSTILE = {
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "endless_loop": "while True:\n    pass\n",
    "huge_allocation": "x = bytearray(8 << 30)\nx[-1] = 1\n",
    "gigabytes_of_output": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(4096):\n    sys.stdout.write(chunk)\n",
    "faked_exit": "import os\nprint('PASS')\nos._exit(0)\n",
    "faked_sys_exit": "print('ALL TESTS PASSED')\nraise SystemExit(0)\n",
}

# How each one is stopped (a program stopped for another reason would hide a missing limit).
STOPPED_BY = {
    # no process gets created (root) or RLIMIT_NPROC: it spins until the wall-clock or the CPU-time limit stops it
    # (which comes first depends on how busy the machine is)
    "fork_bomb": lambda r: r.timed_out or r.killed_reason == "cpu_time",
    "endless_loop": lambda r: r.killed_reason in ("wall_time", "cpu_time"),
    "huge_allocation": lambda r: "MemoryError" in r.stderr and not r.timed_out,
    "gigabytes_of_output": lambda r: r.killed_reason == "output_limit",
    "faked_exit": lambda r: r.exit_code == 0 and not r.nonce_seen,
    "faked_sys_exit": lambda r: r.exit_code == 0 and not r.nonce_seen,
}


def completion(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}{SOLUTION}```"


def live_sandbox_processes() -> set[int]:
    """Sandbox children (and bwraps) alive on this machine: zombies, which hold nothing, left out."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if CHILD_MARKER.encode() in cmdline and state not in ("Z", "X"):
            found.add(int(pid))
    return found


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setattr(recipe, "_shared", None)
    recipe.configure({"backend": request.param, "wall_s": WALL_S, "cpu_s": WALL_S, "workers": 2})
    yield request.param
    recipe.configure(None)


def score(code: str) -> float:
    [value] = code_tests([completion(code)], tests=[TESTS])
    return value


def test_the_solution_alone_passes(backend):
    assert score("") == 1.0


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_scores_zero_and_leaves_nothing(backend, name):
    before = live_sandbox_processes()
    result = recipe.shared_sandbox().run(HOSTILE[name] + SOLUTION)
    assert score(HOSTILE[name]) == 0.0
    assert not result.ok and STOPPED_BY[name](result) and result.wall_s < WALL_S + MARGIN_S
    assert len(result.stdout) <= recipe.shared_sandbox().limits.output_bytes
    assert live_sandbox_processes() <= before, "a process of the call outlived it"


def test_network_connect_is_refused(backend):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'leak')\n"
    try:
        assert score(code) == 0.0
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


@pytest.mark.parametrize("attack", ["os.kill(os.getppid(), signal.SIGKILL)", "os.killpg(os.getpgid(os.getppid()), 9)"])
def test_killing_its_parent_fails(backend, attack):
    """The sandbox's parent is a throwaway process here: if the attack worked, only it would die."""
    code = f"import os, signal\n{attack}\n"
    parent = f"""
from open_grpo.sandbox import Sandbox, Limits
r = Sandbox({backend!r}, Limits(wall_s={WALL_S})).run({code!r})
print("parent alive", r.exit_code)
"""
    run = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=120, start_new_session=True
    )
    assert run.returncode == 0 and "parent alive" in run.stdout, (run.returncode, run.stderr[-500:])


def test_writes_outside_and_reading_the_trainers_files_fail_under_bwrap(backend, tmp_path):
    """The trainer's files: a run folder and a secret under $HOME (outside /tmp, which bwrap replaces anyway)."""
    if backend != "bwrap":
        pytest.skip("the process backend does not isolate the filesystem (see the test below)")
    token = secrets.token_hex(8)
    run_dir = os.path.expanduser(f"~/.open-grpo-hostile-{token}")
    os.makedirs(run_dir)
    secret = os.path.join(run_dir, "secret.txt")
    with open(secret, "w") as f:
        f.write(token)
    try:
        assert score(f"open({os.path.join(run_dir, 'pwned')!r}, 'w').write('x')\n") == 0.0
        assert score(f"open({os.path.expanduser('~/pwned-' + token)!r}, 'w').write('x')\n") == 0.0
        assert score(f"print(open({secret!r}).read())\n") == 0.0
        assert score("open('/usr/pwned', 'w').write('x')\n") == 0.0
        assert score("open('/tmp/private', 'w').write('x')\n") == 1.0  # its own /tmp is writable
        assert os.listdir(run_dir) == ["secret.txt"] and not os.path.exists(os.path.expanduser("~/pwned-" + token))
        assert not os.path.exists("/tmp/private") and not os.path.exists("/usr/pwned")
        r = recipe.shared_sandbox().run(f"print(open({secret!r}).read())")
        assert token not in r.stdout and "FileNotFoundError" in r.stderr
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if os.path.exists(os.path.expanduser("~/pwned-" + token)):
            os.remove(os.path.expanduser("~/pwned-" + token))


def test_process_backend_does_not_isolate_files_and_says_so(tmp_path):
    sb = Sandbox("process", Limits(wall_s=WALL_S))
    target = tmp_path / "written-by-the-child"
    assert sb.run(f"open({str(target)!r}, 'w').write('x')").ok and target.exists()
    assert "does NOT isolate the filesystem" in sb.describe()
