"""The two colocated engines `open_grpo.bench.engine_probe` compares, built by the trainer's own code path: TRL 1.16's
`VLLMGeneration` (its exact `vllm.LLM` arguments: external launcher, processed logprobs, max_num_batched_tokens
4096, max_num_seqs = the batch) inside `colocated.engine_kwargs_applied` (vllm_kv_cache auto; own_process for the
second), with the recipes' output settings (no detokenization, flat logprobs, GC paused: generation.apply), the
trainer's weight sync for each (in-process: TRL's per-parameter `load_weights` and open_grpo's 1 GiB chunks; own
process: the staging buffer) and the step watch. GPU and vLLM only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from open_grpo.engine import colocated, generation, own_process, step_watch

CHUNK_MIB = 1024  # the recipes' vllm_sync_chunk_mib


@dataclass
class ProbeEngine:
    """One colocated engine as the trainer would hold it; `generate` / `push` / `memory` are what the probe times."""

    name: str = field(metadata={"help": "in_process or own_process"})
    gen: object = field(metadata={"help": "TRL's VLLMGeneration"})
    build_s: float = field(default=0.0, metadata={"help": "seconds to build the engine"})
    reserved_delta_gib: float = field(default=0.0, metadata={"help": "this process's reserved memory, built - before"})
    watch: step_watch.StepWatch | None = field(default=None, metadata={"help": "the engine steps' timer"})
    staged: own_process.StagedWeightSync | None = field(default=None, metadata={"help": "own process's weight sync"})

    def generate(self, prompts: list[list[int]], max_tokens: int, greedy: bool) -> dict:
        """Completions of `prompts` (token ids) by TRL's colocated `generate`, timed, with this call's step times."""
        self.gen.max_completion_length = max_tokens
        self.gen.temperature = 0.0 if greedy else 1.0
        start = time.perf_counter()
        _, completions, logprobs, _ = self.gen.generate(prompts, None, 1)
        seconds = time.perf_counter() - start
        steps = self.watch.pop() if self.watch else {}
        per_token = [[lp[0] if lp else None for lp in seq] for seq in (logprobs or [])]
        return {"completions": [list(c) for c in completions], "seconds": seconds, "steps": steps,
                "logprobs": per_token}  # fmt: skip

    def push(self) -> dict[str, float]:
        """The policy's weights into the engine by every path this engine has; seconds each (GPU synchronized)."""
        paths = {"staged": lambda: self.staged.push(self.gen._iter_named_params())} if self.staged else {
            "trl_per_parameter": lambda: type(self.gen).sync_weights(self.gen),
            "chunked_1gib": lambda: colocated.batched_sync_weights(self.gen, CHUNK_MIB << 20),
        }  # fmt: skip
        out = {}
        for path, push in paths.items():
            _synchronize()
            start = time.perf_counter()
            push()
            _synchronize()
            out[path] = time.perf_counter() - start
        return out

    def memory(self) -> dict:
        if self.staged is not None:
            (mem,) = self.gen.llm.collective_rpc("open_grpo_memory")
            return {"engine_process_reserved_gib": mem["reserved"] / 2**30,
                    "engine_process_max_reserved_gib": mem["max_reserved"] / 2**30}  # fmt: skip
        return {"trainer_process_reserved_delta_gib": self.reserved_delta_gib}

    def close(self) -> None:
        core = getattr(self.gen.llm.llm_engine, "engine_core", None)
        if self.staged is not None and core is not None:
            core.shutdown()


def build(name: str, model, tokenizer, accelerator, *, max_model_len: int, sequences: int,
          timeout_s: float = 300.0) -> ProbeEngine:  # fmt: skip
    """`in_process` or `own_process`, as the trainer builds it for this model and batch (`accelerator`: the
    process's `accelerate.Accelerator`)."""
    from trl.generation.vllm_generation import VLLMGeneration

    own = name == "own_process"
    _synchronize()
    reserved = torch.cuda.memory_reserved() if torch.cuda.is_available() else 0
    start = time.perf_counter()
    with colocated.engine_kwargs_applied({}, kv_cache="auto", own_process_engine=own):
        gen = VLLMGeneration(model=model, accelerator=accelerator, processing_class=tokenizer, mode="colocate",
                             tensor_parallel_size=1, gpu_memory_utilization=0.3, max_model_length=max_model_len,
                             max_num_seqs=sequences, temperature=1.0, top_p=1.0, top_k=0, min_p=None,
                             max_completion_length=16, logprobs=0, generation_kwargs={"ignore_eos": True})  # fmt: skip
    build_s = time.perf_counter() - start
    settings = SimpleNamespace(
        vllm_detokenize=False, vllm_flat_logprobs=True, vllm_sampling_logprobs="always", pause_gc_in_generation=True
    )  # the recipes' output settings, logprobs as TRL asks
    generation.apply(gen, settings)
    delta = (torch.cuda.memory_reserved() - reserved) / 2**30 if torch.cuda.is_available() else 0.0
    engine = ProbeEngine(name, gen, build_s, delta)
    engine.watch = step_watch.watch(gen.llm, timeout_s, own)
    if own:
        engine.staged = own_process.use_staged_sync(gen, CHUNK_MIB)
    return engine


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
