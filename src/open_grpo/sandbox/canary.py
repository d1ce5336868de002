"""The canary: run probes in the sandbox and check, in the parent, that what the backend promises holds here.

A probe program reports what it can do (its seccomp mode and capabilities, its limits, whether it can open a
socket and reach a route, see or signal this process, read a secret file of this process, write next to it, see
this process's working directory and home); the parent judges the report against the backend's promises and
checks itself whether the write landed. Two more calls check the nonce: `os._exit(0)` and `sys.exit(0)` before the
end must not count as finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from open_grpo.sandbox.sandbox import Sandbox

PROBE = r"""
import json, os, resource, socket, sys
ask = json.load(open("canary.json"))
seen = {"status": {}, "limits": {}}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    seen["status"][key] = value.strip()
for key, which in ask["limits"].items():
    seen["limits"][key] = resource.getrlimit(getattr(resource, which))[1]
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
except OSError:
    seen["socket"] = "refused"
else:
    try:
        s.connect(("192.0.2.1", 9))  # UDP: only looks up a route, sends nothing
        seen["socket"] = "reachable"
    except OSError:
        seen["socket"] = "unreachable"
seen["interfaces"] = [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]]
try:
    seen["secret"] = open(ask["secret"]).read()
except OSError as e:
    seen["secret"] = type(e).__name__
try:
    open(ask["write"], "w").write("x")
except OSError as e:
    pass
try:
    os.kill(ask["parent"], 0)
    seen["signal"] = "allowed"
except OSError as e:
    seen["signal"] = type(e).__name__
seen["listed"] = {p: os.listdir(p) for p in ask["paths"] if os.path.isdir(p)}
if ask["system"]:
    try:
        with open(ask["system"], "x"):
            pass
        os.remove(ask["system"])
        seen["system"] = "writable"
    except OSError as e:
        seen["system"] = type(e).__name__
print(json.dumps(seen))
"""
RLIMIT_NAMES = {
    "cpu_s": "RLIMIT_CPU",
    "memory_mb": "RLIMIT_AS",
    "file_size_mb": "RLIMIT_FSIZE",
    "processes": "RLIMIT_NPROC",
    "open_files": "RLIMIT_NOFILE",
}
SECRET = "open-grpo canary secret"


def canary_problems(sandbox: Sandbox) -> list[str]:
    """What `sandbox`'s backend promises that does not hold here (empty: all holds)."""
    isolated = sandbox.backend == "bwrap"
    folder = tempfile.mkdtemp(prefix="open-grpo-canary-")
    try:
        secret, written = os.path.join(folder, "secret"), os.path.join(folder, "written")
        with open(secret, "w") as f:
            f.write(SECRET)
        paths = sorted(p for p in {os.getcwd(), os.path.expanduser("~"), folder} if _private(p, sandbox))
        system = os.path.join(os.path.realpath(os.path.dirname(sandbox._backend.python)), ".open-grpo-canary")
        ask = {"limits": RLIMIT_NAMES, "secret": secret, "write": written, "parent": os.getpid(), "paths": paths,
               "system": system if isolated else None}  # fmt: skip
        result = sandbox.run(PROBE, files={"canary.json": json.dumps(ask)})
        if not result.ok:
            why = result.killed_reason or f"exit code {result.exit_code}"
            return [
                f"the sandbox ({sandbox.backend}) cannot run a probe program ({why}): {result.stderr[-500:].strip()}"
            ]
        seen = json.loads(result.stdout)
        problems = _judge(seen, sandbox, isolated)
        if isolated and os.path.exists(written):  # checked here, not taken from the child's word
            problems.append(
                "the child can write into this process's folders (a file appeared in its temporary folder)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for code in ("import os\nos._exit(0)\nprint('unreachable')", "import sys\nsys.exit(0)"):
        early = sandbox.run(code)
        if early.ok or early.nonce_seen:
            problems.append(f"a program that exits early ({code.splitlines()[-1]!r}) counts as finished")
    return problems


def _judge(seen: dict, sandbox: Sandbox, isolated: bool) -> list[str]:
    problems = []
    if sandbox.arch and seen["status"].get("Seccomp") != "2":
        problems.append(f"the seccomp filter is not active in the child (Seccomp: {seen['status'].get('Seccomp')})")
    for key, which in RLIMIT_NAMES.items():
        want = getattr(sandbox.limits, key) * (1 << 20 if key.endswith("_mb") else 1)
        got = seen["limits"][key]
        if got == -1 or got > want + (1 if key == "cpu_s" else 0) or got < want:
            problems.append(f"the child's {which} is {got}, expected {want} (from limits.{key})")
    if sandbox.arch and seen["socket"] != "refused":
        problems.append(f"the child can open an internet socket (seccomp should refuse it): {seen['socket']}")
    if sandbox.arch and seen["signal"] not in ("PermissionError", "ProcessLookupError"):
        problems.append("the child can signal the trainer process")
    if not isolated:
        return problems
    if seen["status"].get("CapEff", "0").strip("0"):
        problems.append(f"the child holds capabilities (CapEff {seen['status']['CapEff']})")
    if seen["socket"] == "reachable" or [i for i in seen["interfaces"] if i != "lo"]:
        problems.append(f"the child sees network devices: {seen['interfaces']}")
    if seen["secret"] == SECRET:
        problems.append("the child can read this process's files (a secret file in its temporary folder)")
    if seen["signal"] == "allowed":
        problems.append("the child can signal this process (no pid namespace)")
    visible = sandbox._backend.visible_paths()
    for path, names in seen["listed"].items():  # a folder bwrap made on the way to a bound one shows only that
        on_the_way = {os.path.relpath(v, path).split("/")[0] for v in visible if v.startswith(path.rstrip("/") + "/")}
        if set(names) - on_the_way:
            problems.append(f"the child sees the contents of this process's folder {path}: {sorted(names)[:5]}")
    if seen.get("system") == "writable":
        problems.append("the child can write into the Python installation (the system is not read-only)")
    return problems


def _private(path: str, sandbox: Sandbox) -> bool:
    """A folder of this process that the bwrap child must not see (not one of the read-only system folders)."""
    real = os.path.realpath(path)
    visible = sandbox._backend.visible_paths() if sandbox.backend == "bwrap" else []
    return real not in ("/", "/tmp") and not any(real == v or real.startswith(v.rstrip("/") + "/") for v in visible)
