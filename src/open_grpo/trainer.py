"""`OpenGRPOTrainer`: TRL's `GRPOTrainer`, made safe to launch colocated and visible while it runs.

What it adds, and nothing else:
- `vllm_engine_kwargs`: options of the colocated `vllm.LLM` that TRL fixes itself (max_num_seqs,
  max_num_batched_tokens, enforce_eager, enable_prefix_caching, kv_cache_dtype, compilation_config, ...);
- weights pushed to the colocated engine in large chunks (`vllm_sync_chunk_mib`), not one call per parameter;
- with TP > 1, vLLM's fused all-reduce switched off where NVLink multicast is unavailable, where vLLM 0.26 crashes
  (`vllm_allreduce_fusion`, `vllm_allreduce.py`);
- `vllm_max_model_length` set from the prompt and completion limits when the recipe leaves it unset;
- per-step phase times (generation, weight sync, rewards, log-prob passes, train), completion tokens/s and
  completions/s per GPU, an MFU estimate and peak GPU memory, in the logs (console, W&B, metrics.jsonl);
- reward health (`rewards/<name>/errors`, `/timeouts`, `/none_frac`), and all ranks stopping together when a reward
  with `on_error: raise` fails on any of them;
- checkpoints marked complete only once every rank has written them (`checkpoints.py`), and a clean stop on
  SIGUSR1 or a stop file: save at the step boundary, then `preempted` is set (`preemption.py`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import time
from collections import defaultdict

import torch
from trl import GRPOTrainer
from trl.trainer.utils import RepeatSampler

from . import vllm_allreduce
from .checkpoints import mark_complete
from .preemption import StopRequest
from .rewards.limits import drop_nonfinite_sums

logger = logging.getLogger(__name__)

# bf16 dense peak of the cards we know, for the MFU estimate (vendor datasheets, no sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "B200": 2250.0, "L40S": 362.0}


@contextlib.contextmanager
def engine_kwargs_applied(engine_kwargs: dict | None):
    """While TRL builds its colocated `vllm.LLM`, merge `engine_kwargs` over the arguments TRL passes."""
    module = importlib.import_module("trl.generation.vllm_generation")
    original = getattr(module, "LLM", None)
    if not engine_kwargs or original is None:
        yield
        return

    @functools.wraps(original)
    def llm_with_engine_kwargs(*args, **kwargs):
        overridden = {k: (kwargs.get(k), v) for k, v in engine_kwargs.items() if k in kwargs}
        if overridden:
            logger.info("vllm_engine_kwargs override TRL's engine arguments: %s", overridden)
        return original(*args, **{**kwargs, **engine_kwargs})

    module.LLM = llm_with_engine_kwargs
    try:
        yield
    finally:
        module.LLM = original


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


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's `RepeatSampler`, shuffled from `seed + epoch` (the Trainer calls `set_epoch`) instead of one generator
    carried across epochs: a run resumed in a later epoch then sees the same prompts, in the same order, as an
    uninterrupted one. Epoch 0's order is TRL's."""

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle and self.seed is not None:
            self.generator.manual_seed(self.seed + epoch)


class PhaseTimer:
    """Wall-clock seconds per named phase, summed between two `pop()` calls."""

    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed

    def pop(self) -> dict[str, float]:
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out


def card_name() -> str | None:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def peak_tflops(card: str | None) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if card and key in card:
            return tflops
    return None


class OpenGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` plus engine options, phase timing and throughput metrics (see the module docstring)."""

    def __init__(
        self,
        *args,
        vllm_engine_kwargs: dict | None = None,
        max_prompt_tokens: int | None = None,
        vllm_sync_chunk_mib: int = 0,
        vllm_allreduce_fusion: str = "auto",
        **kwargs,
    ):
        training_args = kwargs["args"]
        if training_args.use_vllm and training_args.vllm_max_model_length is None and max_prompt_tokens:
            training_args.vllm_max_model_length = max_prompt_tokens + training_args.max_completion_length
        if training_args.use_vllm and isinstance(kwargs.get("model"), str):
            self._preflight(training_args, max_prompt_tokens, kwargs["model"])
        self.vllm_engine_kwargs = dict(vllm_engine_kwargs or {})
        if training_args.use_vllm and training_args.vllm_mode == "colocate":
            self.vllm_engine_kwargs, why = vllm_allreduce.apply(
                training_args.vllm_tensor_parallel_size, vllm_allreduce_fusion, self.vllm_engine_kwargs
            )
            if why and training_args.process_index == 0:
                logger.info("tensor parallel all-reduce: %s", why)
        with engine_kwargs_applied(self.vllm_engine_kwargs):
            super().__init__(*args, **kwargs)
        self.stop_request = StopRequest()
        self.preempted = False
        self.phases = PhaseTimer()
        self._in_scoring = False
        self._step_tokens = 0
        self._step_completions = 0
        self._step_train_tokens = 0
        self._step_start = None
        self.num_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in self.model.parameters())
        self.card = card_name()
        if self.use_vllm:
            gen = self.vllm_generation
            batched = vllm_sync_chunk_mib > 0 and gen.mode == "colocate" and not gen.enable_sleep_mode
            if batched and not gen._dist.is_fsdp and not hasattr(self.model, "peft_config"):
                gen.sync_weights = functools.partial(batched_sync_weights, gen, vllm_sync_chunk_mib << 20)
            if gen.mode == "colocate":
                self._record_engine_config()
            gen.generate = self.phases.wrap("generation", gen.generate)
            gen.sync_weights = self.phases.wrap("weight_sync", gen.sync_weights)

    def _record_engine_config(self) -> None:
        """Write the settings the colocated engine really runs with to <output_dir>/vllm_engine.json."""
        try:
            config = self.vllm_generation.llm.llm_engine.vllm_config
            engine = {
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
                "flashinfer_allreduce_backend": os.environ.get(vllm_allreduce.BACKEND_ENV, "auto"),
            }
        except AttributeError as e:  # an engine double, or a vLLM whose config moved
            logger.warning("could not read the vLLM engine's config: %s", e)
            return
        if self.accelerator.is_main_process:
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, "vllm_engine.json"), "w") as f:
                json.dump(engine, f, indent=1, default=str)
            logger.info("colocated vLLM engine: %s", engine)

    @staticmethod
    def _preflight(training_args, max_prompt_tokens, model_path) -> None:
        """`open-grpo check` on the real world size and cards, before vLLM or the model is built."""
        from .config import RecipeError
        from .preflight import runtime_plan

        result = runtime_plan(training_args, max_prompt_tokens, model_path)
        if result is None:
            return
        if training_args.process_index == 0:
            logger.info("preflight on this cluster:\n%s", result.render())
        if result.errors:
            raise RecipeError(result.errors, "preflight")

    # ---------------------------------------------------------------------------------------------- phase timing

    def training_step(self, model, inputs, num_items_in_batch):
        if self._step_start is None:
            self._step_start = time.perf_counter()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        return super().training_step(model, inputs, num_items_in_batch)

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        self._in_scoring = True
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._in_scoring = False
            self.phases.seconds["generate_and_score"] += time.perf_counter() - start
        completion_tokens = int(output["completion_mask"].sum().item())
        self._step_tokens += completion_tokens
        self._step_completions += output["completion_mask"].shape[0]
        self._step_train_tokens += completion_tokens + int(output["prompt_mask"].sum().item())
        return output

    def _generate_single_turn(self, *args, **kwargs):
        if self.use_vllm:
            return super()._generate_single_turn(*args, **kwargs)  # timed inside, by the vLLM wrappers
        return self.phases.wrap("generation", super()._generate_single_turn)(*args, **kwargs)

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        if not self._in_scoring:  # the policy's own forward inside compute_loss counts as training
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)
        return self.phases.wrap("logprobs", super()._get_per_token_logps_and_entropies)(*args, **kwargs)

    def _calculate_rewards(self, *args, **kwargs):
        start = time.perf_counter()
        error = None
        try:
            result = super()._calculate_rewards(*args, **kwargs)
            place = (self.accelerator.process_index, self.accelerator.num_processes)
            result = drop_nonfinite_sums(result, self.reward_weights, self.reward_funcs, *place)  # NaN/inf sums: None
        except Exception as e:  # on_error: raise
            error = e
        self.phases.seconds["rewards"] += time.perf_counter() - start
        if self.accelerator.num_processes > 1:  # every rank learns of a failure, so none waits forever
            failed = torch.tensor([float(error is not None)], device=self.accelerator.device)
            if self.accelerator.reduce(failed, reduction="sum").item() > 0 and error is None:
                raise RuntimeError("a reward raised on another rank (on_error: raise): stopping every rank")
        if error is not None:
            raise error
        return result

    # --------------------------------------------------------------------------------------------------- logging

    def step_metrics(self) -> dict[str, float]:
        """The throughput and timing metrics of the optimizer step that just ended (reset afterwards)."""
        if self._step_start is None:
            return {}
        step_s = time.perf_counter() - self._step_start
        self._step_start = None
        phases = self.phases.pop()
        scoring = phases.pop("generate_and_score", 0.0)
        generation = phases.get("generation", 0.0)
        sync = phases.get("weight_sync", 0.0)
        rewards = phases.get("rewards", 0.0)
        logprobs = phases.get("logprobs", 0.0)
        other_scoring = max(0.0, scoring - generation - sync - rewards - logprobs)
        metrics = {
            "time/step": step_s,
            "time/generation": generation,
            "time/weight_sync": sync,
            "time/rewards": rewards,
            "time/logprobs": logprobs,
            "time/scoring_other": other_scoring,
            "time/train": max(0.0, step_s - scoring),
            "throughput/completion_tokens_per_s_per_gpu": self._step_tokens / step_s,
            "throughput/completions_per_s_per_gpu": self._step_completions / step_s,
        }
        peak = peak_tflops(self.card)
        if peak:
            # 6 N T for the forward+backward on prompt+completion tokens, 2 N per generated token; a stated estimate
            flops = 6 * self.num_params * self._step_train_tokens + 2 * self.num_params * self._step_tokens
            metrics["throughput/mfu"] = flops / step_s / (peak * 1e12)
        if torch.cuda.is_available():
            metrics["memory/peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        self._step_tokens = self._step_completions = self._step_train_tokens = 0
        return metrics

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        sampler.__class__ = EpochSeededRepeatSampler  # same state, plus set_epoch
        return sampler

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every rank's shards and RNG state are on disk
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            mark_complete(folder, self.state.global_step)

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        # Called once per optimizer step (a step boundary): a requested stop saves this step and ends training.
        if not self.preempted and self.stop_request.agreed(self.accelerator):
            self.preempted = True
            self.control.should_save = True
            self.control.should_training_stop = True
            logger.warning("stop requested: saving checkpoint-%d and stopping", self.state.global_step)
        # Record this step's metrics before `log`, so they are logged with it.
        step = self.step_metrics()
        for name, value in step.items():
            self._metrics["train"][name].append(value)
        for reward in self.reward_funcs if step else []:
            if hasattr(reward, "pop_stats"):
                for name, value in reward.pop_stats().items():
                    self._metrics["train"][name].append(value)
        return super()._maybe_log_save_evaluate(*args, **kwargs)
