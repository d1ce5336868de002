"""`OpenGRPOTrainer`: TRL's `GRPOTrainer`, made safe to launch colocated and visible while it runs.

What it adds, and nothing else:
- `vllm_engine_kwargs`: options of the colocated `vllm.LLM` that TRL fixes itself (max_num_seqs,
  max_num_batched_tokens, enforce_eager, enable_prefix_caching, kv_cache_dtype, compilation_config, ...);
- weights pushed to the colocated engine in large chunks (`vllm_sync_chunk_mib`), not one call per parameter;
- with TP > 1, vLLM's fused all-reduce switched off where NVLink multicast is unavailable
  (`vllm_allreduce_fusion`, engine/allreduce.py);
- `vllm_max_model_length` set from the prompt and completion limits when the recipe leaves it unset;
- less work per step where the result is the same: vLLM's output settings and paused garbage collection during
  generation (engine/generation.py), the old-logprob pass folded into the loss pass (engine/folded_logprobs.py),
  gradient checkpointing only where the memory plan needs it (activation_checkpointing.py);
- per-step phase times, throughput, MFU and peak memory in the logs (telemetry.py);
- reward health (`rewards/<name>/errors`, `/timeouts`, `/none_frac`), and all ranks stopping together when a reward
  with `on_error: raise` fails on any of them;
- checkpoints marked complete only once every rank has written them (checkpoints.py), and a clean stop on
  SIGUSR1 or a stop file: save at the step boundary, then `preempted` is set (preemption.py).
Every reach into TRL's or vLLM's internals goes through `open_grpo.engine`.
"""

from __future__ import annotations

import json
import logging
import os
import time

import torch
from trl import GRPOTrainer

from . import activation_checkpointing
from .checkpoints import mark_complete
from .engine import allreduce, colocated, folded_logprobs, generation
from .preemption import StopRequest
from .telemetry import StepTelemetry

logger = logging.getLogger(__name__)


def trainer_options(script) -> dict:
    """`OpenGRPOTrainer`'s own keyword arguments from a recipe's ScriptArguments (open_grpo.train and the benchmark's
    `open_grpo` row build the trainer from the same recipe keys)."""
    return {
        "vllm_engine_kwargs": script.vllm_engine_kwargs,
        "max_prompt_tokens": script.max_prompt_tokens,
        "vllm_sync_chunk_mib": script.vllm_sync_chunk_mib,
        "vllm_allreduce_fusion": script.vllm_allreduce_fusion,
        "vllm_detokenize": script.vllm_detokenize,
        "vllm_flat_logprobs": script.vllm_flat_logprobs,
        "vllm_sampling_logprobs": script.vllm_sampling_logprobs,
        "fold_old_logprobs": script.fold_old_logprobs,
        "pause_gc_in_generation": script.pause_gc_in_generation,
        "gradient_checkpointing_auto": script.gradient_checkpointing_auto,
    }


class OpenGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` plus engine options, phase timing and throughput metrics (see the module docstring)."""

    def __init__(
        self,
        *args,
        vllm_engine_kwargs: dict | None = None,
        max_prompt_tokens: int | None = None,
        vllm_sync_chunk_mib: int = 0,
        vllm_allreduce_fusion: str = "auto",
        vllm_detokenize: bool = True,
        vllm_flat_logprobs: bool = False,
        vllm_sampling_logprobs: str = "always",
        fold_old_logprobs: bool = False,
        pause_gc_in_generation: bool = False,
        gradient_checkpointing_auto: bool = False,
        **kwargs,
    ):
        # The defaults are TRL's behaviour; the recipes' (ScriptArguments) defaults are open_grpo's.
        training_args = kwargs["args"]
        if gradient_checkpointing_auto:
            why = activation_checkpointing.decide(training_args, max_prompt_tokens, kwargs.get("model"))
            if training_args.process_index == 0:
                logger.info(why)
        if training_args.use_vllm and training_args.vllm_max_model_length is None and max_prompt_tokens:
            training_args.vllm_max_model_length = max_prompt_tokens + training_args.max_completion_length
        if training_args.use_vllm and isinstance(kwargs.get("model"), str):
            self._preflight(training_args, max_prompt_tokens, kwargs["model"])
        self.vllm_engine_kwargs = dict(vllm_engine_kwargs or {})
        if training_args.use_vllm and training_args.vllm_mode == "colocate":
            self.vllm_engine_kwargs, why = allreduce.apply(
                training_args.vllm_tensor_parallel_size, vllm_allreduce_fusion, self.vllm_engine_kwargs
            )
            if why and training_args.process_index == 0:
                logger.info("tensor parallel all-reduce: %s", why)
        with colocated.engine_kwargs_applied(self.vllm_engine_kwargs):
            super().__init__(*args, **kwargs)
        self.stop_request = StopRequest()
        self.preempted = False
        self._in_scoring = False
        num_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in self.model.parameters())
        self.telemetry = StepTelemetry(num_params)
        self._fold_old_logprobs, why_not = (
            folded_logprobs.fold_applies(self.args) if fold_old_logprobs else (False, "")
        )
        self._loss_inputs = None  # the micro-batch whose loss is being computed, while folding
        if fold_old_logprobs and not self._fold_old_logprobs and self.args.process_index == 0:
            logger.info("fold_old_logprobs: TRL's old-logprob pass kept (%s)", why_not)
        if self.use_vllm:
            gen = self.vllm_generation
            colocated.use_batched_sync(gen, vllm_sync_chunk_mib, self.model)
            changed = generation.apply(
                gen,
                self.args,
                detokenize=vllm_detokenize,
                flat_logprobs=vllm_flat_logprobs,
                sampling_logprobs=vllm_sampling_logprobs,
                pause_gc=pause_gc_in_generation,
            )
            if changed and self.args.process_index == 0:
                logger.info("colocated vLLM sampling: %s", "; ".join(changed))
            if gen.mode == "colocate":
                self._record_engine_settings(gen.llm)
            gen.generate = self.telemetry.phases.wrap("generation", gen.generate)
            gen.sync_weights = self.telemetry.phases.wrap("weight_sync", gen.sync_weights)

    def _record_engine_settings(self, llm) -> None:
        """Write the settings the colocated engine really runs with to <output_dir>/vllm_engine.json."""
        engine = colocated.engine_settings(llm)
        if engine is not None and self.accelerator.is_main_process:
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
        self.telemetry.start()
        return super().training_step(model, inputs, num_items_in_batch)

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        self._in_scoring = True
        try:
            if self._fold_old_logprobs:  # the loss pass computes the correction (attach_ratio)
                with folded_logprobs.scoring_without_old_logprobs(self):
                    output = super()._generate_and_score_completions(inputs)
            else:
                output = super()._generate_and_score_completions(inputs)
        finally:
            self._in_scoring = False
            self.telemetry.phases.seconds["generate_and_score"] += time.perf_counter() - start
        self.telemetry.count(
            completion_tokens=int(output["completion_mask"].sum().item()),
            completions=output["completion_mask"].shape[0],
            prompt_tokens=int(output["prompt_mask"].sum().item()),
        )
        return output

    def _generate_single_turn(self, *args, **kwargs):
        if self.use_vllm:
            return super()._generate_single_turn(*args, **kwargs)  # timed inside, by the vLLM wrappers
        return self.telemetry.phases.wrap("generation", super()._generate_single_turn)(*args, **kwargs)

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        if not self._in_scoring:  # the policy's own forward inside compute_loss counts as training
            output = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if self._loss_inputs is not None:
                folded_logprobs.attach_ratio(self, self._loss_inputs, output[0])
                self._loss_inputs = None
            return output
        return self.telemetry.phases.wrap("logprobs", super()._get_per_token_logps_and_entropies)(*args, **kwargs)

    def _compute_loss(self, model, inputs):
        self._loss_inputs = inputs if self._fold_old_logprobs else None
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_inputs = None

    def _calculate_rewards(self, *args, **kwargs):
        start = time.perf_counter()
        error = None
        try:
            result = super()._calculate_rewards(*args, **kwargs)
        except Exception as e:  # on_error: raise
            error = e
        self.telemetry.phases.seconds["rewards"] += time.perf_counter() - start
        if self.accelerator.num_processes > 1:  # every rank learns of a failure, so none waits forever
            failed = torch.tensor([float(error is not None)], device=self.accelerator.device)
            if self.accelerator.reduce(failed, reduction="sum").item() > 0 and error is None:
                raise RuntimeError("a reward raised on another rank (on_error: raise): stopping every rank")
        if error is not None:
            raise error
        return result

    # ------------------------------------------------------------------------------------ step boundary, logging

    def _get_train_sampler(self, dataset=None):
        return colocated.epoch_seeded(super()._get_train_sampler(dataset))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every rank's shards and RNG state are on disk
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            mark_complete(folder, self.state.global_step)

    def _stop_if_requested(self) -> None:
        """A requested stop (any rank) saves this step and ends training, on every rank together."""
        if not self.preempted and self.stop_request.agreed(self.accelerator):
            self.preempted = True
            self.control.should_save = True
            self.control.should_training_stop = True
            logger.warning("stop requested: saving checkpoint-%d and stopping", self.state.global_step)

    def _record_step_metrics(self) -> None:
        """This step's telemetry and reward health, recorded before `log` so they are logged with the step."""
        step = self.telemetry.pop()
        for name, value in step.items():
            self._metrics["train"][name].append(value)
        for reward in self.reward_funcs if step else []:
            if hasattr(reward, "pop_stats"):
                for name, value in reward.pop_stats().items():
                    self._metrics["train"][name].append(value)

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        # Called once per optimizer step: the step boundary.
        self._stop_if_requested()
        self._record_step_metrics()
        return super()._maybe_log_save_evaluate(*args, **kwargs)
