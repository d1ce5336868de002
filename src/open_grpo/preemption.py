"""Stopping cleanly when the cluster asks: save a checkpoint at a step boundary, then exit with `PREEMPTED_EXIT`.

A stop is requested by SIGUSR1 to a training process, or by the file named in $OPEN_GRPO_STOP_FILE appearing
(what `slurm/train.sbatch` creates when SLURM sends its warning signal: launchers do not forward SIGUSR1). At the
end of every optimizer step all ranks agree (one max-reduce of a flag), so they save the same step and stop together.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

logger = logging.getLogger(__name__)

PREEMPTED_EXIT = 75  # sysexits.h EX_TEMPFAIL: "try again later"
# Launchers (accelerate, torchrun) turn a child's exit code into their own, so the job script looks for this file
# in the output folder instead: written by the main process after the checkpoint is complete.
PREEMPTED_MARKER = "PREEMPTED"


class StopRequest:
    def __init__(self):
        self._signalled = False
        self.stop_file = os.environ.get("OPEN_GRPO_STOP_FILE")
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._on_signal)

    def _on_signal(self, signum, frame):
        self._signalled = True
        logger.warning("SIGUSR1: will save a checkpoint at the end of this step and exit %d", PREEMPTED_EXIT)

    def local(self) -> bool:
        return self._signalled or bool(self.stop_file and os.path.exists(self.stop_file))

    def agreed(self, accelerator) -> bool:
        """True on every rank when any rank was asked to stop."""
        import torch

        flag = torch.tensor([1.0 if self.local() else 0.0], device=accelerator.device)
        if accelerator.num_processes > 1:
            flag = accelerator.reduce(flag, reduction="sum")
        return flag.item() > 0
