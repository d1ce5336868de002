"""The colocated vLLM engine core in a process of its own (`vllm_engine_process: own_process`), without Ray.

In TRL 1.16's colocated mode the external launcher keeps vLLM's whole engine in the training process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`): on every decode step the scheduler, the GPU worker and the output processing
run one after the other in one Python thread. Here the engine is built as vLLM builds it for `vllm serve` on one GPU:

- construction: TRL's own `vllm.LLM` arguments, with the `uni` executor (one worker, TP 1) instead of the external
  launcher, `VLLM_ENABLE_V1_MULTIPROCESSING=1` (the engine core, i.e. scheduler + worker, in a child process;
  vLLM's front end, i.e. input and output processing, stays in the trainer and overlaps with the engine's next
  step), and `worker_extension_cls` = worker_extension.StagedWeightLoader. While it is built, the child process must
  see this rank's GPU only (`CUDA_VISIBLE_DEVICES` = this rank's physical GPU) and none of the launcher's
  variables: torchrun/accelerate's RANK, WORLD_SIZE, MASTER_PORT, ... (TRL sets them for the external launcher) and
  TORCHELASTIC_USE_AGENT_STORE, which would make the engine's own one-process torch.distributed group wait for
  the launcher's store. All are restored once the engine is up. vLLM's environment cache (vllm.envs) is switched off
  first: an engine built in-process earlier in the same process (the probe) froze VLLM_ENABLE_V1_MULTIPROCESSING=0.
- weights: one staging buffer on the trainer's GPU, shared with the engine once through a CUDA IPC handle
  (torch.multiprocessing.reductions.reduce_tensor, rebuilt in the worker). Per sync: copy a chunk of parameters
  into it (cast to the engine's dtype), `torch.cuda.synchronize`, `collective_rpc("open_grpo_load", names, shapes,
  offsets)`: the worker views the buffer and calls the model's `load_weights` (TRL's in-process call) and
  synchronizes; then the next chunk; at the end `reset_prefix_cache`. Buffer size and layout: staging.py.
  Parameters come from TRL's `_iter_named_params` (ZeRO-3 gathers, PEFT merge/unmerge, FSDP), each copied into the
  buffer before the iterator moves on, so a gathered parameter needs no clone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, MutableMapping

import torch

from open_grpo.engine.staging import ChunkPacker, aligned, buffer_bytes, rpc_args
from open_grpo.engine.worker_extension import device_uuid, share

logger = logging.getLogger(__name__)

WORKER_EXTENSION = "open_grpo.engine.worker_extension.StagedWeightLoader"
# Variables of torchrun / accelerate / TRL's colocated setup that must not reach the engine's own torch.distributed
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")  # fmt: skip
LAUNCHER_PREFIXES = ("TORCHELASTIC_",)


def physical_gpu(environ: Mapping[str, str], device_index: int) -> str:
    """This rank's GPU as the engine process must see it: the `device_index`-th entry of CUDA_VISIBLE_DEVICES (an
    index or a UUID), or the index itself when the variable is unset."""
    visible = [d.strip() for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible:
        return str(device_index)
    if device_index >= len(visible):
        raise ValueError(
            f"this rank uses cuda:{device_index} but CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r} lists "
            f"{len(visible)} GPU(s)"
        )
    return visible[device_index]


def engine_environ(environ: Mapping[str, str], gpu: str | None) -> dict[str, str | None]:
    """The changes to the environment while the engine is built (None: removed)."""
    changes: dict[str, str | None] = {
        name: None for name in environ if name in LAUNCHER_VARS or name.startswith(LAUNCHER_PREFIXES)
    }
    changes["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    changes["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"  # the trainer has CUDA up: vLLM would force it anyway
    if gpu is not None:
        changes["CUDA_VISIBLE_DEVICES"] = gpu
    return changes


@contextlib.contextmanager
def environ_changed(changes: Mapping[str, str | None], environ: MutableMapping[str, str] = os.environ):
    """Apply `changes` to `environ` inside the block; restore every touched variable exactly afterwards."""
    saved = {name: environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value


def own_process_kwargs(trl_kwargs: dict) -> dict:
    """TRL's colocated `vllm.LLM` arguments for an engine in its own process."""
    tp = trl_kwargs.get("tensor_parallel_size", 1) or 1
    if tp != 1:
        raise ValueError(f"an engine in its own process runs at tensor_parallel_size 1, got {tp}")
    kwargs = dict(trl_kwargs)
    kwargs["distributed_executor_backend"] = "uni"
    kwargs["worker_extension_cls"] = WORKER_EXTENSION
    return kwargs


def _vllm_envs_uncached() -> None:
    """vLLM caches its environment variables once an engine core has started in this process; read them afresh."""
    try:
        import vllm.envs as vllm_envs
    except ImportError:  # the engine double of the CPU tests
        return
    vllm_envs.disable_envs_cache()


def build(llm_cls, trl_kwargs: dict, environ: MutableMapping[str, str] = os.environ):
    """`llm_cls(**kwargs)` (vllm.LLM) as an engine in its own process on this process's current GPU."""
    gpu = physical_gpu(environ, torch.cuda.current_device()) if torch.cuda.is_available() else None
    _vllm_envs_uncached()
    with environ_changed(engine_environ(environ, gpu), environ):
        start = time.perf_counter()
        llm = llm_cls(**own_process_kwargs(trl_kwargs))
    logger.info("vLLM engine core in its own process on GPU %s (built in %.0f s)", gpu, time.perf_counter() - start)
    return llm


@contextlib.contextmanager
def ipc_shareable_allocation(environ: Mapping[str, str] = os.environ):
    """Allocate outside expandable segments where the trainer uses them (PYTORCH_CUDA_ALLOC_CONF): a plain cudaMalloc
    block is what a CUDA IPC handle shares (vLLM's sleep-mode allocator switches the same setting)."""
    expandable = "expandable_segments:true" in environ.get("PYTORCH_CUDA_ALLOC_CONF", "").replace(" ", "").lower()
    if not expandable:
        yield
        return
    torch.cuda.memory._set_allocator_settings("expandable_segments:False")
    try:
        yield
    finally:
        torch.cuda.memory._set_allocator_settings("expandable_segments:True")


def engine_dtype(llm, fallback: torch.dtype) -> torch.dtype:
    try:
        return llm.llm_engine.model_config.dtype
    except AttributeError:
        return fallback


class StagedWeightSync:
    """The trainer's side of the weight path into an engine in its own process (see the module docstring)."""

    def __init__(self, llm, tensor_sizes: list[int], chunk_bytes: int, dtype: torch.dtype, device: torch.device):
        self.llm, self.dtype, self.device = llm, dtype, device
        self.engine_memory: dict = {}
        self.last: dict = {}
        self._attach(buffer_bytes(tensor_sizes, chunk_bytes))

    def _attach(self, nbytes: int) -> None:
        """A buffer of `nbytes` on the trainer's GPU, shared with the engine (which drops any earlier one)."""
        with ipc_shareable_allocation():
            self.buffer = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        (info,) = self.llm.collective_rpc("open_grpo_attach", args=(share(self.buffer),))
        mine = device_uuid(self.device)
        if mine is not None and info.get("device_uuid") != mine:
            raise RuntimeError(
                f"the engine process runs on GPU {info.get('device_uuid')} but this rank's staging buffer is on {mine}: "
                "CUDA_VISIBLE_DEVICES did not reach the engine process as set (vllm_engine_process: in_process avoids it)"
            )
        logger.info("weight staging buffer: %.2f GiB on %s, engine process pid %s", nbytes / 2**30, self.device,
                    info.get("pid"))  # fmt: skip

    def push(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
        """Load every (name, tensor) into the engine, chunk by chunk; then reset its prefix cache."""
        start, chunks, total = time.perf_counter(), 0, 0
        itemsize = self.buffer.new_empty((), dtype=self.dtype).element_size()
        packer = ChunkPacker(self.buffer.numel())
        for name, tensor in named_tensors:
            nbytes = tensor.numel() * itemsize
            if aligned(nbytes) > self.buffer.numel():  # larger than sized for (an FSDP shard counted small): grow
                chunks += self._load(packer.clear())
                self._attach(aligned(nbytes))
                packer = ChunkPacker(self.buffer.numel())
            slot = packer.place(name, tuple(tensor.shape), nbytes)
            if slot is None:
                chunks += self._load(packer.clear())
                slot = packer.place(name, tuple(tensor.shape), nbytes)
            self.buffer[slot.offset : slot.offset + nbytes].view(self.dtype).view(tensor.shape).copy_(tensor)
            total += nbytes
        chunks += self._load(packer.clear())
        self.llm.reset_prefix_cache()
        self.last = {"seconds": time.perf_counter() - start, "chunks": chunks, "bytes": total}
        return self.last

    def _load(self, slots) -> int:
        if not slots:
            return 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the copies are in the buffer before the engine reads it
        dtype_name = str(self.dtype).removeprefix("torch.")
        (self.engine_memory,) = self.llm.collective_rpc("open_grpo_load", args=rpc_args(slots, dtype_name))
        return 1


def parameter_sizes(model, dtype: torch.dtype) -> list[int]:
    """Bytes of every parameter in `dtype` (ZeRO-3's full size where a parameter is partitioned): the buffer is
    sized before the first sync gathers anything."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return [int(getattr(p, "ds_numel", p.numel())) * itemsize for p in model.parameters()]


def use_staged_sync(gen, chunk_mib: int) -> StagedWeightSync:
    """Replace TRL's weight sync of `gen` (VLLMGeneration, colocate, its engine in its own process) by the staged
    one; returns the sync, whose `last` and `engine_memory` the trainer logs."""
    model = gen.model
    device = gen.accelerator.device
    dtype = engine_dtype(gen.llm, next(model.parameters()).dtype)
    sync = StagedWeightSync(gen.llm, parameter_sizes(model, dtype), chunk_mib << 20, dtype, device)
    gen.sync_weights = lambda: sync.push(gen._iter_named_params())
    return sync
