"""`OpenGRPOTrainer`: TRL's `GRPOTrainer`, made safe to launch colocated and visible while it runs.

What it adds, and nothing else:
- `vllm_engine_kwargs`: options of the colocated `vllm.LLM` that TRL fixes itself (max_num_seqs,
  max_num_batched_tokens, enforce_eager, enable_prefix_caching, kv_cache_dtype, compilation_config, ...);
- weights pushed to the colocated engine in large chunks (`vllm_sync_chunk_mib`), not one call per parameter;
- the engine core in a process of its own (`vllm_engine_process`, engine/own_process.py), vLLM's KV cache sized to
  the generation batch (`vllm_kv_cache`, kv_cache_plan.py), each generate call's engine steps timed and watched
  (`vllm_engine_step_timeout_s`, engine/step_watch.py);
- with TP > 1, vLLM's fused all-reduce switched off where NVLink multicast is unavailable
  (`vllm_allreduce_fusion`, engine/allreduce.py);
- `vllm_max_model_length` set from the prompt and completion limits when the recipe leaves it unset;
- the throughput levers of docs/PERFORMANCE.md: vLLM's outputs without detokenizing or per-token objects, sampled
  logprobs only when the loss reads them, the GC paused during generation (engine/generation.py), the old-logprob
  pass folded into the loss pass (engine/folded_logprobs.py), `gradient_checkpointing: auto`;
- per-step phase times, throughput, MFU and peak memory in the logs (telemetry.py), and how many optimizer steps old
  the completions trained on are (`offpolicy/staleness`: 0 on-policy; steps_per_generation k gives 0 .. k-1);
- reward health (`rewards/<name>/errors`, `/timeouts`, `/none_frac`), and all ranks stopping together when a reward
  with `on_error: raise` fails on any of them;
- checkpoints marked complete (with the run, layout and file sizes) only once every rank has written them, rotation
  only after that, and each save's time logged (checkpoints.py); a clean stop on SIGUSR1, SIGTERM, SIGINT or a stop
  file: save at the step boundary, then `preempted` is set (preemption.py);
- with `log_completions`, `<output_dir>/completions.jsonl` (completions_log.py);
- with `dynamic_sampling`, zero-variance groups dropped and the batch refilled (dynamic_sampling.py);
- with tools, calls and failures per tool in the logs (`tools/...`, environments/calls.py);
- evaluation (TRL's) kept out of the training steps' telemetry, with pass@k and reward health (evaluation.py).
The overrides here are of TRL's (and transformers') private trainer methods, kept short; every deeper reach into
TRL's or vLLM's internals goes through `open_grpo.engine`, whose import checks the installed versions.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Sized

import torch
from trl import GRPOTrainer

from open_grpo.engine import allreduce, colocated, folded_logprobs, gathered, generation
from open_grpo.engine.colocated_engine import ColocatedEngine
from open_grpo.planning.preflight import check_at_start
from open_grpo.rewards.limits import drop_nonfinite_sums
from open_grpo.trainer import activation_checkpointing, preemption
from open_grpo.trainer.checkpoints import save_marked
from open_grpo.trainer.completions_log import CompletionsLog
from open_grpo.trainer.config import OpenGRPOConfig
from open_grpo.trainer.dynamic_sampling import DynamicSampler
from open_grpo.trainer.evaluation import EvalRewards
from open_grpo.trainer.telemetry import StepTelemetry

logger = logging.getLogger(__name__)


class OpenGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` plus engine options, phase timing and throughput metrics (see the module docstring). Its options
    are the fields of the `OpenGRPOConfig` it is given as `args`; build it from a recipe with
    `trainer_builder.build_trainer`."""

    run_stamp: dict | None = None  # what each COMPLETE marker records about the run (resume.Plan.stamp)

    def __init__(self, *args, tool_stats=None, **kwargs):
        # Every option is a field of the OpenGRPOConfig given as `args` (grpo_config.py), read as self.args.<option>;
        # `tool_stats`: the environments.calls.ToolStats the recipe's tools count into (not an option: an object).
        training_args = kwargs["args"]
        if not isinstance(training_args, OpenGRPOConfig):
            raise TypeError(f"OpenGRPOTrainer needs args=OpenGRPOConfig(...), got {type(training_args).__name__}")
        model = kwargs.get("model")
        self.engine = ColocatedEngine.choose(training_args, quantized=kwargs.get("quantization_config") is not None)
        if training_args.gradient_checkpointing_auto:
            why = activation_checkpointing.decide(training_args, model, kwargs.get("peft_config"),
                                                  kwargs.get("quantization_config"), self.engine.memory)  # fmt: skip
            if training_args.process_index == 0:
                logger.info(why)
        max_prompt_tokens = training_args.max_prompt_tokens
        if training_args.use_vllm and training_args.vllm_max_model_length is None and max_prompt_tokens:
            training_args.vllm_max_model_length = max_prompt_tokens + training_args.max_completion_length
        if training_args.use_vllm and isinstance(model, str):
            check_at_start(training_args, model, kwargs.get("peft_config"), kwargs.get("quantization_config"),
                           kwargs.get("reward_funcs") or (), self.engine.memory)  # fmt: skip
        self.vllm_engine_kwargs = dict(training_args.vllm_engine_kwargs or {})
        if training_args.use_vllm and training_args.vllm_mode == "colocate":
            self.vllm_engine_kwargs, why = allreduce.apply(
                training_args.vllm_tensor_parallel_size, training_args.vllm_allreduce_fusion, self.vllm_engine_kwargs
            )
            if why and training_args.process_index == 0:
                logger.info("tensor parallel all-reduce: %s", why)
        # TRL names a reward model after its path; the recipe's name (`__name__`, registry.build_rewards) wins.
        recipe_names = [getattr(f, "__name__", None) for f in kwargs.get("reward_funcs") or ()]
        with self.engine.building(self.vllm_engine_kwargs):
            super().__init__(*args, **kwargs)
        self.reward_func_names = [
            mine or trl for mine, trl in itertools.zip_longest(recipe_names, self.reward_func_names)
        ]
        self._generated_at_step = 0  # the optimizer step whose weights generated the batch being trained on
        self.stop_request = preemption.install()
        self.tool_stats = tool_stats  # environments.calls.ToolStats, counted by the tools TRL calls
        self.preempted = False
        self._in_scoring = False
        self.eval_rewards = EvalRewards()
        num_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in self.model.parameters())
        self.telemetry = StepTelemetry(num_params)
        fold = self.args.fold_old_logprobs
        self._fold_old_logprobs, why_not = folded_logprobs.fold_applies(self.args) if fold else (False, "")
        self._loss_inputs = None  # the micro-batch whose loss is being computed, while folding
        if fold and not self._fold_old_logprobs and self.args.process_index == 0 and why_not:
            logger.info("fold_old_logprobs: TRL's old-logprob pass kept (%s)", why_not)
        self.completions_log = None
        if self.log_completions:
            self.completions_log = CompletionsLog(self.args.output_dir, self.args.completions_log_max_per_step,
                                                  self.reward_weights.tolist(), self.accelerator.is_main_process)  # fmt: skip
            self.add_callback(self.completions_log)
        self.dynamic_sampler = None
        if self.args.dynamic_sampling:
            self.dynamic_sampler = DynamicSampler(
                self.num_generations, self.args.dynamic_sampling_max_rounds, self.args.seed
            )
        if self.use_vllm:
            gen = self.vllm_generation
            self.engine.attach(gen, self.model, self.args.output_dir, self.accelerator.is_main_process)
            changed = generation.apply(gen, self.args)
            if changed and self.args.process_index == 0:
                logger.info("colocated vLLM sampling: %s", "; ".join(changed))
            gen.generate = self.engine.metrics_logged(self.telemetry.phases.wrap("generation", gen.generate),
                                                      lambda: self._metrics["train" if self.model.training else "eval"])  # fmt: skip
            gen.sync_weights = self.telemetry.phases.wrap("weight_sync", gen.sync_weights)

    # ---------------------------------------------------------------------------------------------- phase timing

    def training_step(self, model, inputs, num_items_in_batch):
        self.telemetry.start()
        loss = super().training_step(model, inputs, num_items_in_batch)  # generates (TRL's _prepare_inputs) when due
        self._metrics["train"]["offpolicy/staleness"].append(self.state.global_step - self._generated_at_step)
        return loss

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        self._in_scoring = True
        try:
            if self.dynamic_sampler is None or not self.model.training:
                return self._generate_and_score_once(inputs)
            output, metrics = self.dynamic_sampler.fill(self, inputs, self._generate_and_score_once)
            for name, value in metrics.items():
                self._metrics["train"][name].append(value)
            return output
        finally:
            self._in_scoring = False
            self.telemetry.phases.seconds["generate_and_score"] += time.perf_counter() - start

    def _generate_and_score_once(self, inputs):
        """TRL's generation and scoring of `inputs`, counted for telemetry and kept for completions.jsonl."""
        if self.model.training:
            self._generated_at_step = self.state.global_step
        if self._fold_old_logprobs:  # the loss pass computes the correction (folded_logprobs.attach_ratio)
            with folded_logprobs.scoring_without_old_logprobs(self):
                output = super()._generate_and_score_completions(inputs)
        else:
            output = super()._generate_and_score_completions(inputs)
        if self.completions_log is not None and self.model.training:  # made for the step that is about to end
            rows = gathered.latest_rows(self, len(inputs) * self.accelerator.num_processes)
            self.completions_log.capture(rows, step=self.state.global_step + 1)
        if self.tool_stats is not None:
            self.tool_stats.count_completions(output["completion_mask"].shape[0])
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

    def _calculate_rewards(self, inputs, *args, **kwargs):
        if self.completions_log is not None and "solution" in inputs[0]:  # gathered by TRL with the completions
            gathered.add_column(self, "solution", [x["solution"] for x in inputs])
        start = time.perf_counter()
        error = None
        try:
            result = super()._calculate_rewards(inputs, *args, **kwargs)
            place = (self.accelerator.process_index, self.accelerator.num_processes)
            result = drop_nonfinite_sums(result, self.reward_weights, self.reward_funcs, *place)  # NaN/inf sums: None
        except Exception as e:  # on_error: raise
            error = e
        self.telemetry.phases.seconds["rewards"] += time.perf_counter() - start
        if self.accelerator.num_processes > 1:  # every rank learns of a failure, so none waits forever
            failed = torch.tensor([float(error is not None)], device=self.accelerator.device)
            if self.accelerator.reduce(failed, reduction="sum").item() > 0 and error is None:
                raise RuntimeError("a reward raised on another rank (on_error: raise): stopping every rank")
        if error is not None:
            raise error
        if not self.model.training:  # an evaluation batch: every rank holds every rank's rewards
            self.eval_rewards.add(result)
        return result

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):  # fmt: skip
        """TRL's evaluation, left out of the next training step's telemetry, plus pass@k and reward health."""
        self.eval_rewards = EvalRewards()
        with self.telemetry.paused():
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        num_prompts = len(dataloader.dataset) if isinstance(dataloader.dataset, Sized) else None
        metrics = self.eval_rewards.pop_metrics(self.reward_func_names, self.num_generations_eval, num_prompts)
        for reward in self.reward_funcs:
            if hasattr(reward, "pop_stats"):
                metrics.update(reward.pop_stats())
        if self.tool_stats is not None:
            metrics.update(self.tool_stats.pop_metrics(self.accelerator))
        output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in metrics.items()})
        return output

    # ------------------------------------------------------------------------------------ step boundary, logging

    def _get_train_sampler(self, dataset=None):
        return colocated.epoch_seeded(super()._get_train_sampler(dataset))

    def _save_checkpoint(self, model, trial):
        seconds = save_marked(self, functools.partial(super()._save_checkpoint, model, trial), trial)
        self._metrics["train"]["time/checkpoint_save"].append(seconds)  # logged with the next row
        if self.accelerator.is_main_process:
            preemption.report_save(self.state.global_step, seconds)

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
        if self.tool_stats is not None and step:  # every rank: a sum over ranks
            for name, value in self.tool_stats.pop_metrics(self.accelerator).items():
                self._metrics["train"][name].append(value)

    def log(self, logs, start_time=None):
        if self.tool_stats is not None and self.log_completions:  # TRL's parquet table of them would crash on some
            gathered.tool_arguments_as_json(self)
        super().log(logs, start_time)
        if self.completions_log is not None:
            self.completions_log.flush(self.state.global_step)

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        # Called once per optimizer step: the step boundary.
        self._stop_if_requested()
        self._record_step_metrics()
        return super()._maybe_log_save_evaluate(*args, **kwargs)
