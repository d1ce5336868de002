"""TRL 1.16's colocated vLLM engine (`trl.generation.vllm_generation.VLLMGeneration`), reached into where TRL offers no
option: extra `vllm.LLM` arguments, the KV cache sized to the work (kv_cache_plan.py), the engine core in a process
of its own (own_process.py), weights pushed in chunks, the settings the engine really runs with, and TRL's prompt
sampler re-seeded per epoch so a resumed run sees the prompts an uninterrupted one would."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os

import torch
from trl.trainer.utils import RepeatSampler

from open_grpo.engine import own_process
from open_grpo.engine.allreduce import BACKEND_ENV
from open_grpo.engine.batching import safe_engine_kwargs
from open_grpo.planning.kv_cache_plan import sized_engine_kwargs

logger = logging.getLogger(__name__)

GENERATION_MODULE = "trl.generation.vllm_generation"  # where TRL builds its colocated `LLM`


@contextlib.contextmanager
def engine_kwargs_applied(engine_kwargs: dict | None, *, kv_cache: str = "fraction", own_process_engine: bool = False):
    """While TRL builds its colocated `vllm.LLM`: `engine_kwargs` merged over the arguments TRL passes;
    `max_num_batched_tokens` kept within what vLLM's start-up can address (batching.py); with `kv_cache` 'auto', the
    KV cache sized to TRL's batch and length limits (arguments the user gave win); with `own_process_engine`, the
    engine built in a process of its own. Yields a dict that receives the final arguments."""
    module = importlib.import_module(GENERATION_MODULE)
    original = getattr(module, "LLM", None)
    built: dict = {}
    if original is None:
        yield built
        return
    engine_kwargs = dict(engine_kwargs or {})

    @functools.wraps(original)
    def llm_with_engine_kwargs(*args, **kwargs):
        overridden = {k: (kwargs.get(k), v) for k, v in engine_kwargs.items() if k in kwargs}
        if overridden:
            logger.info("vllm_engine_kwargs override TRL's engine arguments: %s", overridden)
        kwargs, why = safe_engine_kwargs({**kwargs, **engine_kwargs}, "max_num_batched_tokens" in engine_kwargs)
        if why:
            logger.info("colocated vLLM engine: %s (vLLM's start-up dummy runs overrun larger budgets)", why)
        if kv_cache == "auto":
            sized, why = sized_engine_kwargs(kwargs, _card_bytes())
            kwargs.update({k: v for k, v in sized.items() if k not in engine_kwargs})
            logger.info(why)
        built["kwargs"] = kwargs
        if own_process_engine:
            return own_process.build(original, kwargs)
        return original(*args, **kwargs)

    module.LLM = llm_with_engine_kwargs
    try:
        yield built
    finally:
        module.LLM = original


def _card_bytes() -> int | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def batched_sync_weights(gen, chunk_bytes: int) -> None:
    """Push the policy's weights into the colocated engine in chunks of `chunk_bytes`, one `load_weights` call per
    chunk instead of TRL's one call per parameter (each call walks vLLM's whole module tree)."""
    load_weights = gen.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights
    zero3 = gen._dist.is_zero3
    chunk, size = [], 0
    for name, tensor in gen._iter_named_params():
        # Under ZeRO-3 the gathered tensor is released when the iterator moves on: keep a copy until it is loaded.
        chunk.append((name, tensor.clone() if zero3 else tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= chunk_bytes:
            load_weights(chunk)
            chunk, size = [], 0
    if chunk:
        load_weights(chunk)
    gen.llm.reset_prefix_cache()


def use_batched_sync(gen, chunk_mib: int, model) -> bool:
    """Replace TRL's per-parameter weight sync by `batched_sync_weights` where it applies (colocate, no sleep mode,
    no FSDP, no PEFT adapter: those keep TRL's own path). Returns whether it did."""
    applies = chunk_mib > 0 and gen.mode == "colocate" and not gen.enable_sleep_mode
    if not applies or gen._dist.is_fsdp or hasattr(model, "peft_config"):
        return False
    gen.sync_weights = functools.partial(batched_sync_weights, gen, chunk_mib << 20)
    return True


def engine_settings(llm) -> dict | None:
    """The settings a colocated `vllm.LLM` really runs with (None for an engine double or a vLLM whose config moved)."""
    try:
        config = llm.llm_engine.vllm_config
        return {
            "max_num_seqs": config.scheduler_config.max_num_seqs,
            "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
            "async_scheduling": config.scheduler_config.async_scheduling,
            "max_model_len": config.model_config.max_model_len,
            "enforce_eager": config.model_config.enforce_eager,
            "gpu_memory_utilization": config.cache_config.gpu_memory_utilization,
            "enable_prefix_caching": config.cache_config.enable_prefix_caching,
            "kv_cache_dtype": config.cache_config.cache_dtype,
            "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
            "disable_custom_all_reduce": config.parallel_config.disable_custom_all_reduce,
            "fuse_allreduce_rms": config.compilation_config.pass_config.fuse_allreduce_rms,
            "flashinfer_allreduce_backend": os.environ.get(BACKEND_ENV, "auto"),
            "kv_cache_memory_bytes": config.cache_config.kv_cache_memory_bytes,
            "distributed_executor_backend": config.parallel_config.distributed_executor_backend,
        }
    except AttributeError as e:
        logger.warning("could not read the vLLM engine's config: %s", e)
        return None


def record_engine_settings(llm, output_dir: str, is_main: bool, extra: dict | None = None) -> None:
    """Write the settings the colocated engine really runs with, and `extra` (where its core runs), to
    <output_dir>/vllm_engine.json (and the log)."""
    engine = engine_settings(llm)
    if engine is not None and is_main:
        engine.update(extra or {})
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "vllm_engine.json"), "w") as f:
            json.dump(engine, f, indent=1, default=str)
        logger.info("colocated vLLM engine: %s", engine)


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's `RepeatSampler`, shuffled from `seed + epoch` (the Trainer calls `set_epoch`) instead of one generator
    carried across epochs: a run resumed in a later epoch then sees the same prompts, in the same order, as an
    uninterrupted one. Epoch 0's order is TRL's."""

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle and self.seed is not None:
            self.generator.manual_seed(self.seed + epoch)


def epoch_seeded(sampler):
    """TRL's sampler, same state, plus `set_epoch`."""
    if isinstance(sampler, RepeatSampler):
        sampler.__class__ = EpochSeededRepeatSampler
    return sampler
