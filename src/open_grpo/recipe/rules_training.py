"""Value rules of the training keys: what TRL, transformers, torch's optimizer and vLLM would refuse later (some
after vLLM started, some at the first optimizer step, some silently), refused here first, each naming the key.

Sources, as of the pinned versions: TRL 1.16 `GRPOConfig.__post_init__` and `GRPOTrainer.__init__`; transformers 5.17
`TrainingArguments.__post_init__`; vLLM 0.26 `SamplingParams._verify_args`; `torch.optim.AdamW`; numpy's seed range.
Types and choices (loss_type, lr_scheduler_type, ...) are schema.py's; the batch arithmetic is world_size.py's.
"""

from __future__ import annotations

import math

from open_grpo.recipe import world_size

# key -> smallest valid value; None means "unset" and is not checked
MINIMUM = {
    "per_device_train_batch_size": 1,
    "per_device_eval_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "num_generations": 2,  # GRPO's advantage is relative to the group: one completion has no baseline
    "num_generations_eval": 1,
    "max_completion_length": 1,
    "steps_per_generation": 1,
    "generation_batch_size": 1,
    "num_iterations": 1,
    "vllm_tensor_parallel_size": 1,
    "vllm_max_model_length": 1,
    "torch_empty_cache_steps": 1,
    "dataloader_num_workers": 0,  # torch's DataLoader
    "warmup_steps": 0,
    "max_prompt_tokens": 1,
    "completions_log_max_per_step": 1,
    "dynamic_sampling_max_rounds": 1,
    "vllm_sync_chunk_mib": 0,
    "vllm_engine_step_timeout_s": 0,  # 0: no watch
}
# the counts the batch arithmetic divides by (world_size.py): it runs once they are sound
ARITHMETIC_KEYS = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                   "num_generations", "num_generations_eval", "steps_per_generation", "generation_batch_size")  # fmt: skip
SEED_MAX = 2**32 - 1  # numpy.random.seed, which transformers.set_seed calls
TRUNCATE_MODES = ("token_truncate", "sequence_truncate")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count_problems(t) -> list[str]:
    problems = []
    for key, minimum in MINIMUM.items():
        value = getattr(t, key)
        if _number(value) and value < minimum:
            why = " (GRPO compares each completion with its group)" if key == "num_generations" else ""
            problems.append(f"{key!r} must be at least {minimum}{why}, got {value}")
    return problems


def length_and_seed_problems(t) -> list[str]:
    problems = []
    if _number(t.max_steps) and (t.max_steps == 0 or t.max_steps < -1):
        problems.append(
            f"'max_steps' must be a positive number of optimizer steps, or -1 (the default) to train "
            f"'num_train_epochs' epochs; got {t.max_steps} (transformers would silently train epochs)"
        )
    elif t.max_steps == -1 and _number(t.num_train_epochs) and t.num_train_epochs <= 0:
        problems.append(f"'num_train_epochs' must be positive when 'max_steps' is -1, got {t.num_train_epochs}")
    for key in ("seed", "data_seed"):
        value = getattr(t, key)
        if isinstance(value, int) and not 0 <= value <= SEED_MAX:
            problems.append(f"{key!r} must be in [0, 2**32 - 1] (numpy's seed range), got {value}")
    return problems


def sampling_problems(t) -> list[str]:
    """vLLM's SamplingParams checks (also where transformers generates: TRL divides the logits by temperature)."""
    problems = []
    temperature, top_p, top_k, min_p, penalty = t.temperature, t.top_p, t.top_k, t.min_p, t.repetition_penalty
    if _number(temperature):
        upper = 2.0 if t.use_vllm else math.inf
        if not (math.isfinite(temperature) and 0 < temperature <= upper):
            limit = "(0, 2] (vLLM's range)" if t.use_vllm else "> 0"
            problems.append(f"'temperature' must be {limit}: TRL divides the logits by it; got {temperature}")
    if _number(top_p) and not 0 < top_p <= 1:
        problems.append(f"'top_p' must be in (0, 1] (the nucleus' probability mass), got {top_p}")
    if _number(top_k) and top_k < -1:
        problems.append(f"'top_k' must be 0 (off) or at least 1, got {top_k}")
    if _number(min_p) and not 0 <= min_p <= 1:
        problems.append(f"'min_p' must be in [0, 1], got {min_p}")
    if _number(penalty) and not (math.isfinite(penalty) and penalty > 0):
        problems.append(f"'repetition_penalty' must be a finite number > 0 (1 is off), got {penalty}")
    share = t.vllm_gpu_memory_utilization
    if t.use_vllm and _number(share) and not 0 < share <= 1:
        problems.append(
            f"'vllm_gpu_memory_utilization' must be in (0, 1] (the share of each GPU's memory vLLM takes), got {share}"
        )
    return problems


def optimizer_problems(t) -> list[str]:
    """torch.optim's own checks, which otherwise stop the run at its first optimizer step."""
    problems = []
    for key in ("learning_rate", "weight_decay") + (("adam_epsilon",) if str(t.optim).startswith("adam") else ()):
        value = getattr(t, key)
        if _number(value) and not value >= 0:
            problems.append(f"{key!r} must be >= 0 (torch's optimizer refuses it), got {value}")
    if str(t.optim).startswith("adam"):
        for key in ("adam_beta1", "adam_beta2"):
            value = getattr(t, key)
            if _number(value) and not 0 <= value < 1:
                problems.append(f"{key!r} must be in [0, 1) (torch's optimizer refuses it), got {value}")
    return problems


def transformers_problems(t) -> list[str]:
    """TrainingArguments.__post_init__'s cross-field checks."""
    problems = []
    if t.logging_strategy == "steps" and t.logging_steps == 0:
        problems.append("'logging_steps' must not be 0 with 'logging_strategy: steps'")
    if t.eval_strategy == "steps" and not t.eval_steps and _number(t.logging_steps) and t.logging_steps <= 0:
        problems.append("'eval_strategy: steps' needs 'eval_steps' (or 'logging_steps') above 0")
    for key, strategy in (("logging_steps", t.logging_strategy), ("eval_steps", t.eval_strategy),
                          ("save_steps", t.save_strategy)):  # fmt: skip
        value = getattr(t, key)
        if strategy == "steps" and _number(value) and value > 1 and value != int(value):
            problems.append(f"{key!r} must be a whole number of steps when above 1 (below 1: a share), got {value}")
    if t.load_best_model_at_end and t.save_strategy != "best" and t.eval_strategy != t.save_strategy:
        problems.append(
            f"'load_best_model_at_end' needs 'save_strategy' ({t.save_strategy}) equal to 'eval_strategy' "
            f"({t.eval_strategy}), or 'save_strategy: best'"
        )
    if t.fp16 and t.bf16:
        problems.append("'fp16' and 'bf16' are both true: pick one")
    if t.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy") and t.eval_strategy == "no":
        problems.append(f"'lr_scheduler_type: {t.lr_scheduler_type}' needs an 'eval_strategy' (it reads eval loss)")
    return problems


def trl_problems(t) -> list[str]:
    """GRPOConfig.__post_init__'s and GRPOTrainer.__init__'s own refusals (the batch arithmetic aside)."""
    problems = []
    if t.log_completions_hub_repo is not None and not t.log_completions:
        problems.append(
            "'log_completions_hub_repo' is set but 'log_completions' is false: enable it or unset the repo"
        )
    if t.auto_find_batch_size:
        problems.append(
            "'auto_find_batch_size' is not supported by GRPO (halving the batch breaks whole prompt groups): lower "
            "'per_device_train_batch_size' instead"
        )
    low, high = t.vllm_importance_sampling_clip_min, t.vllm_importance_sampling_clip_max
    if _number(low) and _number(high) and low >= high:
        problems.append(
            f"'vllm_importance_sampling_clip_min' ({low}) must be below 'vllm_importance_sampling_clip_max' ({high})"
        )
    truncates = t.vllm_importance_sampling_mode in TRUNCATE_MODES
    if t.vllm_importance_sampling_correction and truncates and low is None and high is None:
        problems.append(
            f"'vllm_importance_sampling_mode: {t.vllm_importance_sampling_mode}' needs "
            "'vllm_importance_sampling_clip_min' or 'vllm_importance_sampling_clip_max' set"
        )
    if (t.loss_type == "vespo" and t.use_vllm and t.vllm_importance_sampling_correction
            and t.vllm_importance_sampling_mode not in ("token_truncate", "token_mask")):  # fmt: skip
        problems.append("'loss_type: vespo' needs 'vllm_importance_sampling_mode' token_truncate or token_mask")
    if t.sync_ref_model and t.beta == 0:
        problems.append(
            "'sync_ref_model' needs a reference model: 'beta' is 0, so there is none; set one or the other"
        )
    if isinstance(t.liger_kernel_config, dict) and t.liger_kernel_config.get("fused_linear_cross_entropy"):
        problems.append("'liger_kernel_config' fused_linear_cross_entropy is not supported by TRL's GRPO trainer")
    return problems


def dynamic_sampling_problems(t, world: int) -> list[str]:
    """Dynamic sampling needs each group on one rank and advantages normalised per group (dynamic_sampling.py)."""
    if not t.dynamic_sampling:
        return []
    problems = []
    spg = world_size.generation_batch(t, world)[0]["steps_per_generation"] if world >= 1 else 1
    local = t.per_device_train_batch_size * spg
    if _number(t.num_generations) and t.num_generations > 0 and local % t.num_generations:
        problems.append(
            f"'dynamic_sampling' needs each rank's generation batch (per_device_train_batch_size x steps_per_generation "
            f"= {local}) to be a multiple of 'num_generations' ({t.num_generations}) so that every prompt's "
            "group is scored on one rank: change 'per_device_train_batch_size'"
        )
    if t.scale_rewards not in ("group", "none", True, False):
        problems.append(
            f"'dynamic_sampling' needs advantages normalised per group ('scale_rewards: group' or 'none'), got "
            f"{t.scale_rewards!r}: with 'batch' a kept group's advantages depend on the groups dropped with it"
        )
    if t.multi_objective_aggregation != "sum_then_normalize":
        problems.append(
            "'dynamic_sampling' needs 'multi_objective_aggregation: sum_then_normalize' (it normalises per group), "
            f"got {t.multi_objective_aggregation!r}"
        )
    return problems


def batched_tokens_limit(max_num_seqs: int, max_model_len: int) -> int:
    """(engine/batching.py says why.) The largest `max_num_batched_tokens` vLLM 0.26's dummy runs can spread over `max_num_seqs` requests of at
    most `max_model_len` tokens."""
    return max_num_seqs * max_model_len


def batched_tokens_problem(requested: int | None, max_num_seqs: int, max_model_len: int | None) -> str | None:
    """Why a recipe's `vllm_engine_kwargs.max_num_batched_tokens` would crash the engine at start-up, or None."""
    if requested is None or max_model_len is None:
        return None
    limit = batched_tokens_limit(max_num_seqs, max_model_len)
    if requested <= limit:
        return None
    return (
        f"vllm_engine_kwargs.max_num_batched_tokens {requested} is more than max_num_seqs {max_num_seqs} x "
        f"max_model_len {max_model_len} = {limit}: vLLM 0.26's start-up dummy runs then overrun the block table "
        f"(illegal memory access); set it to at most {limit}, or leave it unset"
    )


def engine_batch_problems(t, world: int) -> list[str]:
    """The colocated engine's token budget against the sequences it holds (engine/batching.py)."""
    engine = t.vllm_engine_kwargs if isinstance(t.vllm_engine_kwargs, dict) else {}
    if not (t.use_vllm and t.vllm_mode == "colocate") or "max_num_batched_tokens" not in engine:
        return []
    spg = world_size.generation_batch(t, world)[0]["steps_per_generation"]
    seqs = engine.get("max_num_seqs") or t.per_device_train_batch_size * t.vllm_tensor_parallel_size * spg
    length = t.vllm_max_model_length
    if length is None and t.max_prompt_tokens:
        length = t.max_prompt_tokens + t.max_completion_length
    problem = batched_tokens_problem(engine["max_num_batched_tokens"], seqs, length)
    return [problem] if problem else []


def training_problems(t, world: int) -> list[str]:
    """Every rule of the training keys, for `world` ranks (their types and choices already checked)."""
    problems = count_problems(t) + length_and_seed_problems(t) + sampling_problems(t) + optimizer_problems(t)
    problems += transformers_problems(t) + trl_problems(t)
    sound = all(
        getattr(t, k) is None or (_number(getattr(t, k)) and getattr(t, k) >= MINIMUM[k]) for k in ARITHMETIC_KEYS
    )
    if sound:
        problems += (
            world_size.problems(t, world) + dynamic_sampling_problems(t, world) + engine_batch_problems(t, world)
        )
    return problems
