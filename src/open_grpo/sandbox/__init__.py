"""Sandboxed code execution: untrusted Python (a model's completion, a tool call) never runs in the trainer.

    from open_grpo.sandbox import Sandbox, Limits, RunResult
    sb = Sandbox(backend="auto", limits=Limits(wall_s=5.0, memory_mb=512), workers=8)
    r = sb.run(code, stdin="", files={"data.txt": "..."})   # a fresh child per call; r.ok, r.stdout, r.timed_out
    results = sb.run_many([(code, stdin), ...])             # in parallel over a worker pool, in order
    sb.canary()                                             # what the backend promises and does not hold here
    sb.describe()                                           # one line: what is and is not isolated

Modules: limits.py (Limits, RunResult), backends.py (bwrap and plain-process command lines), child.py (the child's
trusted first code: limits, seccomp, the nonce), seccomp.py (the deny-list as BPF), runner.py (one call: feed,
read with bounds, kill the process group, judge in the parent), canary.py (probes), sandbox.py (the `Sandbox`),
recipe.py (the recipe's `sandbox:` settings and the one sandbox a training process shares).
"""

from open_grpo.sandbox.backends import SandboxUnavailable
from open_grpo.sandbox.limits import Limits, RunResult
from open_grpo.sandbox.sandbox import BACKENDS, Sandbox

__all__ = ["BACKENDS", "Limits", "RunResult", "Sandbox", "SandboxUnavailable"]
