"""What runs inside vLLM's engine process for an engine in its own process (`vllm_engine_process: own_process`).

vLLM 0.26 makes the class named by `worker_extension_cls` a base class of its GPU worker (v1/worker/worker_base.py
`WorkerWrapperBase.init_worker`), so these methods run as the worker, with its `device` and `model_runner`, when
the trainer calls `LLM.collective_rpc("<method>", args=...)`. Their names carry the `open_grpo_` prefix: vLLM
refuses an extension whose attributes collide with the worker's.

The trainer shares its staging buffer once (`open_grpo_attach`: a CUDA IPC handle of a uint8 tensor on the same
GPU), then per chunk of weights calls `open_grpo_load` with names, shapes and byte offsets: the worker views the
buffer at those offsets and hands the views to the model's own `load_weights` (the call TRL makes in-process), and
synchronizes before returning, so the trainer may overwrite the buffer once the call is back.

This module is imported by the engine process: it needs torch only.
"""

from __future__ import annotations

import math
import os
import pickle
import signal

import torch

# torch.multiprocessing.reductions.rebuild_cuda_tensor(..., storage_device, ...): the argument index of the device,
# which is the trainer's device index in the trainer's numbering and must become this process's (vLLM's example
# examples/offline_inference/rlhf_utils.py `rebuild_ipc` does the same).
DEVICE_ARG = 6


def share(tensor: torch.Tensor) -> bytes:
    """A CUDA tensor's IPC handle as bytes (vLLM's remote calls carry bytes as they are; pickled by us, read by us)."""
    from torch.multiprocessing.reductions import reduce_tensor

    return pickle.dumps(reduce_tensor(tensor))


def open_shared(handle: bytes, device_index: int) -> torch.Tensor:
    """The tensor behind `share(...)`'s bytes, mapped on this process's `device_index`."""
    rebuild, args = pickle.loads(handle)
    args = list(args)
    args[DEVICE_ARG] = device_index
    return rebuild(*args)


def device_uuid(device: torch.device) -> str | None:
    """The GPU's UUID (the same card in every process, whatever CUDA_VISIBLE_DEVICES numbers it)."""
    if device.type != "cuda":
        return None
    return str(torch.cuda.get_device_properties(device).uuid)


def _ignore_stop_signal() -> None:
    """SIGUSR1 is the trainer's "save and stop" (preemption.py); sent to the whole process group, its default action
    would kill the engine mid-step. The engine process ignores it and ends with the trainer."""
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    except ValueError:  # not the engine process's main thread: leave it
        pass


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_the_trainer() -> None:
    """vLLM's engine process has no parent-death check: a trainer killed outright (SIGKILL, the OOM killer) would
    leave it holding the GPU. Linux's parent-death signal ends it with the trainer."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux/glibc: vLLM's own shutdown still runs on a normal exit
        pass


def memory(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"reserved": 0, "max_reserved": 0}
    return {"reserved": torch.cuda.memory_reserved(device), "max_reserved": torch.cuda.max_memory_reserved(device)}


class StagedWeightLoader:
    """Mixed into vLLM's GPU worker: weights loaded from the trainer's staging buffer."""

    def open_grpo_attach(self, handle: bytes) -> dict:
        if self.device.type == "cuda":  # in vLLM's engine process (not the CPU tests' double, which runs in theirs)
            _ignore_stop_signal()
            _die_with_the_trainer()
        self.open_grpo_staging = open_shared(handle, self.device.index or 0)
        return {"device_uuid": device_uuid(self.device), "bytes": self.open_grpo_staging.numel(), "pid": os.getpid()}

    def open_grpo_load(self, names: list[str], shapes: list[list[int]], offsets: list[int], dtype: str) -> dict:
        buffer = self.open_grpo_staging
        dt = getattr(torch, dtype)
        weights = []
        for name, shape, offset in zip(names, shapes, offsets):
            nbytes = math.prod(shape) * dt.itemsize
            weights.append((name, buffer[offset : offset + nbytes].view(dt).view(shape)))
        self.model_runner.model.load_weights(weights=weights)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the trainer reuses the buffer as soon as this call returns
        return memory(self.device)

    def open_grpo_memory(self) -> dict:
        return memory(self.device)

    def open_grpo_read(self, name: str) -> dict:
        """One of the engine's parameters (vLLM's name), as float32 bytes: for checks, not for the hot path."""
        tensor = dict(self.model_runner.model.named_parameters())[name].detach().float().cpu()
        return {"shape": list(tensor.shape), "float32": tensor.numpy().tobytes()}
