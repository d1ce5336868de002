"""The colocated engine's own options, in one place for the trainer: where its core runs (`vllm_engine_process`),
how its KV cache is sized (`vllm_kv_cache`), how weights reach it, and what each generate call logs about it."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from open_grpo.engine import colocated, own_process, step_watch
from open_grpo.planning.memory_plan import EngineMemory
from open_grpo.recipe import engine_process as process_choice

logger = logging.getLogger(__name__)


@dataclass
class ColocatedEngine:
    """Decided before TRL builds the engine (`choose`), wired to TRL's VLLMGeneration after (`attach`)."""

    memory: EngineMemory = field(default_factory=EngineMemory, metadata={"help": "what the memory plan books"})
    colocate: bool = field(default=False, metadata={"help": "use_vllm with vllm_mode colocate"})
    why: str = field(default="", metadata={"help": "why the engine core runs where it runs"})
    chunk_mib: int = field(default=0, metadata={"help": "vllm_sync_chunk_mib (0: TRL's per-parameter sync)"})
    step_timeout_s: float = field(default=0.0, metadata={"help": "vllm_engine_step_timeout_s (0: no watchdog)"})
    staged_sync: own_process.StagedWeightSync | None = field(default=None, metadata={"help": "own_process's sync"})
    watch: step_watch.StepWatch | None = field(default=None, metadata={"help": "the engine steps' timer"})

    @property
    def process(self) -> str:
        return self.memory.process

    @classmethod
    def choose(cls, training, *, quantized: bool) -> ColocatedEngine:
        """The options of `training` (an OpenGRPOConfig: vllm_engine_process, vllm_kv_cache, vllm_sync_chunk_mib,
        vllm_engine_step_timeout_s); `own_process` where it cannot run raises ValueError."""
        colocate = training.use_vllm and training.vllm_mode == "colocate"
        resolved, why = process_choice.resolve(training.vllm_engine_process, colocate=colocate,
                                               tp=training.vllm_tensor_parallel_size,
                                               sleep_mode=training.vllm_enable_sleep_mode, quantized=quantized)  # fmt: skip
        chunk_mib = training.vllm_sync_chunk_mib
        kv_cache = training.vllm_kv_cache if colocate else "fraction"
        memory = EngineMemory(kv_cache=kv_cache, process=resolved, staging_mib=chunk_mib)
        return cls(memory=memory, colocate=colocate, why=why, chunk_mib=chunk_mib,
                   step_timeout_s=training.vllm_engine_step_timeout_s)  # fmt: skip

    def building(self, engine_kwargs: dict):
        """The context TRL builds its engine in (colocated.engine_kwargs_applied with these options)."""
        if self.colocate:
            logger.info("colocated vLLM engine core: %s (%s)", self.process, self.why)
        return colocated.engine_kwargs_applied(engine_kwargs, kv_cache=self.memory.kv_cache,
                                               own_process_engine=self.process == "own_process")  # fmt: skip

    def attach(self, gen, model, output_dir: str, is_main: bool) -> None:
        """The weight sync TRL's `gen` uses, the step watch, and vllm_engine.json (colocate only)."""
        if self.process == "own_process":
            self.staged_sync = own_process.use_staged_sync(gen, self.chunk_mib)
        else:
            colocated.use_batched_sync(gen, self.chunk_mib, model)
        if gen.mode == "colocate":
            colocated.record_engine_settings(gen.llm, output_dir, is_main, {"engine_process": self.process})
            self.watch = step_watch.watch(gen.llm, self.step_timeout_s, self.process == "own_process")

    def metrics_logged(self, generate, metrics_now):
        """`generate`, then the call's engine-step times and the engine process's memory appended to the metrics
        `metrics_now()` returns (TRL's per-mode lists, averaged when logged)."""

        @functools.wraps(generate)
        def run(*args, **kwargs):
            out = generate(*args, **kwargs)
            metrics = metrics_now()
            for name, value in (self.watch.pop() if self.watch else {}).items():
                metrics[name].append(value)
            if self.staged_sync is not None and self.staged_sync.engine_memory:
                metrics["memory/engine_process_reserved_gib"].append(
                    self.staged_sync.engine_memory["max_reserved"] / 2**30
                )
            return out

        return run
