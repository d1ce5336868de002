"""Stopping cleanly when the cluster asks: save a checkpoint at a step boundary, then exit with `PREEMPTED_EXIT`.

A stop is requested by SIGUSR1, SIGTERM or SIGINT (Ctrl-C) to a training process, or by the file named in
$OPEN_GRPO_STOP_FILE appearing (what `slurm/train.sbatch` creates when SLURM sends its warning signal: launchers do
not forward SIGUSR1).
The handlers are installed first thing in `open_grpo.train.main`, before anything slow:
- a stop requested during start-up (recipe, data, model, vLLM) exits 75 before the first step, without a checkpoint
  (the requeued run resumes from the newest complete one, if any);
- during training, at the end of every optimizer step all ranks agree (one sum-reduce of a flag), so they save the
  same step and stop together. A SIGTERM whose grace time runs out mid-save leaves a checkpoint without its
  COMPLETE marker, which is never resumed from. A second SIGTERM or SIGINT ends the process at once, unless it comes
  within `FORWARDED_WITHIN_S` of the first: that is the launcher passing the same signal on (Ctrl-C reaches torchrun
  and its workers alike, and torchrun then sends each worker the signal it got, killing them 30 s later).

Each exit for a requeue writes <output_dir>/PREEMPTED (the step), which the job script looks for.

The margin: SLURM sends USR1 `OPEN_GRPO_STOP_MARGIN_S` seconds before the time limit (180 in the sbatch). The step
under way and one checkpoint save must fit in it: every save's time is logged, and start-up warns when the estimated
save of this model already takes half the margin.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from open_grpo.errors import EXIT_PREEMPTED as PREEMPTED_EXIT  # sysexits.h EX_TEMPFAIL: "try again later"
from open_grpo.planning.preflight import model_facts

logger = logging.getLogger(__name__)

FORWARDED_WITHIN_S = 3.0  # the same signal again this soon is a launcher forwarding it, not a second request
# Launchers (accelerate, torchrun) turn a child's exit code into their own, so the job script looks for this file
# in the output folder instead: written by the main process once the stop is safe (its checkpoint is complete).
PREEMPTED_MARKER = "PREEMPTED"
STOP_MARGIN_ENV = "OPEN_GRPO_STOP_MARGIN_S"
DEFAULT_STOP_MARGIN_S = 180.0  # slurm/train.sbatch: `#SBATCH --signal=B:USR1@180`
# A planning figure, not a measurement: one node writing to a shared parallel file system (a Lustre, GPFS or NFS
# client) typically streams 1-3 GB/s; 1 GB/s is the cautious end. Set OPEN_GRPO_SAVE_GB_S to what the
# "checkpoint-N saved in X s" log lines show on your cluster.
SAVE_GB_PER_S = 1.0
# Bytes per parameter a checkpoint writes: the 16-bit model, plus the optimizer (fp32 master weights and Adam's two
# moments: 12 bytes under ZeRO; Adam's two moments beside fp32 weights without it).
MODEL_BYTES, ZERO_OPTIMIZER_BYTES, DDP_OPTIMIZER_BYTES = 2, 12, 8


class StopRequest:
    """The process's one stop flag (see `install`)."""

    def __init__(self):
        self.signal_name: str | None = None
        self._first: dict[int, float] = {}  # signal -> when it first came

    def _on_signal(self, signum, frame):
        if signum in self._first and signum != signal.SIGUSR1:  # asked twice: end now (a forwarded copy: ignore)
            if time.monotonic() - self._first[signum] >= FORWARDED_WITHIN_S:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self._first[signum] = time.monotonic()
        self.signal_name = signal.Signals(signum).name
        logger.warning("%s: stopping at the end of this step with a checkpoint (during start-up: before the first "
                       "step, without one), exit %d", self.signal_name, PREEMPTED_EXIT)  # fmt: skip

    def local(self) -> bool:
        stop_file = os.environ.get("OPEN_GRPO_STOP_FILE")
        return self.signal_name is not None or bool(stop_file and os.path.exists(stop_file))

    def agreed(self, state) -> bool:
        """True on every rank when any rank was asked to stop. `state`: an Accelerator or accelerate PartialState."""
        import torch

        flag = torch.tensor([1.0 if self.local() else 0.0], device=state.device)
        if state.num_processes > 1:
            torch.distributed.all_reduce(flag)
        return flag.item() > 0


_request: StopRequest | None = None


def install() -> StopRequest:
    """The process's stop request, with its SIGUSR1/SIGTERM/SIGINT handlers (re)installed: a library may have replaced
    them. SIGINT (Ctrl-C) stops like SIGTERM: a checkpoint at the step's end instead of a traceback."""
    global _request
    if _request is None:
        _request = StopRequest()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _request._on_signal)
    return _request


def exit_for_requeue(output_dir, step: int, state, before_exit=None):
    """Write the PREEMPTED marker (main process), wait for every rank, and exit `PREEMPTED_EXIT`."""
    logger.warning("stopped on request at step %d: exiting %d for a requeue", step, PREEMPTED_EXIT)
    if state.is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / PREEMPTED_MARKER).write_text(f"{step}\n")
    state.wait_for_everyone()
    if before_exit is not None:
        before_exit()
    sys.exit(PREEMPTED_EXIT)


def stop_margin_s() -> float | None:
    """The USR1 margin a job script announced, or the sbatch's default under SLURM; None outside SLURM."""
    if os.environ.get(STOP_MARGIN_ENV):
        return float(os.environ[STOP_MARGIN_ENV])
    return DEFAULT_STOP_MARGIN_S if os.environ.get("SLURM_JOB_ID") else None


def estimated_save_s(num_params: int, zero_stage: int, nodes: int = 1) -> float:
    """One checkpoint: the 16-bit model written by one rank, the optimizer state by every node in parallel."""
    gb_per_s = float(os.environ.get("OPEN_GRPO_SAVE_GB_S") or SAVE_GB_PER_S)
    optimizer = ZERO_OPTIMIZER_BYTES if zero_stage else DDP_OPTIMIZER_BYTES
    return num_params * (MODEL_BYTES / gb_per_s + optimizer / (gb_per_s * max(nodes, 1))) / 1e9


def margin_warning(num_params: int, zero_stage: int, nodes: int = 1) -> str | None:
    """A warning when the estimated save alone takes over half the stop margin (the rest is for the step under way)."""
    margin = stop_margin_s()
    if margin is None:
        return None
    save = estimated_save_s(num_params, zero_stage, nodes)
    if save <= margin / 2:
        return None
    suggest = 60 * math.ceil((2 * save + 60) / 60)
    return (
        f"a checkpoint of this model ({num_params / 1e9:.1f}B parameters, ZeRO stage {zero_stage}) takes an estimated "
        f"{save:.0f} s to save at {os.environ.get('OPEN_GRPO_SAVE_GB_S') or SAVE_GB_PER_S} GB/s, over half the "
        f"{margin:.0f} s stop margin ({STOP_MARGIN_ENV}): a preempted job may be killed before its checkpoint is "
        f"complete. Submit with a longer margin, e.g. {STOP_MARGIN_ENV}={suggest} sbatch --signal=B:USR1@{suggest} ..."
    )


def report_save(step: int, seconds: float) -> None:
    """Log one checkpoint's save time, warning when it took over half the stop margin."""
    margin = stop_margin_s()
    if margin is not None and seconds > margin / 2:
        logger.warning("checkpoint-%d saved in %.1f s: over half the %.0f s stop margin (%s); submit with a longer "
                       "one (sbatch --signal=B:USR1@<seconds>)", step, seconds, margin, STOP_MARGIN_ENV)  # fmt: skip
    else:
        logger.info("checkpoint-%d saved in %.1f s", step, seconds)


def warn_if_margin_short(model_name: str, zero_stage: int) -> str | None:
    """Start-up: `margin_warning` for this recipe's model, where its size is known offline (preflight's table)."""
    try:
        num_params = model_facts(model_name).num_params
    except (KeyError, TypeError, ValueError, OSError):  # a hub model preflight has no facts for: nothing to estimate
        return None
    nodes = int(os.environ.get("WORLD_SIZE", "1")) // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    warning = margin_warning(num_params, zero_stage, nodes)
    if warning:
        logger.warning(warning)
    return warning
