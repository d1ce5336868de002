"""open_grpo's own recipe keys (`ScriptArguments`): data, prompts, rewards, vLLM engine options, resume, features.

TRL's training and generation keys are `trl.GRPOConfig`'s, model keys `trl.ModelConfig`'s; a recipe mixes all three
(config.py parses and validates them together).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import RecipeError

GENERATOR_PREFIX = "reasoning-gym:"
MEMORY_CHECK_CHOICES = ("error", "warn")


@dataclass
class ScriptArguments:
    """open_grpo's own recipe keys. TRL's training keys live in `trl.GRPOConfig`, model keys in `trl.ModelConfig`."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Where prompts come from: a hub id (e.g. 'DigitalLearningGmbH/MATH-lighteval'), a local file or "
            "folder of .jsonl/.json/.parquet/.csv files, or an offline generator 'reasoning-gym:<task>'."
        },
    )
    datasets: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "A mixture instead of 'dataset_name': [{name, weight, split, size, config, prompt_column, "
            "solution_column, system_prompt}, ...], mixed by weight (open_grpo/mixture.py). Keys an entry leaves out "
            "take the top-level value."
        },
    )
    mixture_stopping_strategy: str = field(
        default="first_exhausted",
        metadata={
            "help": "When a 'datasets' mixture ends (datasets.interleave_datasets): 'first_exhausted' (no row twice), "
            "'all_exhausted' (smaller sources repeat until every row is used), 'all_exhausted_without_replacement'."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration (hub datasets only)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_size: int = field(
        default=1000, metadata={"help": "Number of tasks drawn from a 'reasoning-gym:' generator (seeded by `seed`)."}
    )
    prompt_column: str = field(default="problem", metadata={"help": "Column holding the user's prompt text."})
    solution_column: str | None = field(
        default="solution",
        metadata={"help": "Column holding the gold answer; it reaches rewards as `solution`. null if none."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System message put before every prompt."})
    max_prompt_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Prompts longer than this many tokens (after the chat template) are dropped before training and "
            "the count is logged. null keeps every prompt."
        },
    )
    rewards: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "Rewards to combine: [{name: accuracy, weight: 1.0, <reward parameter>: value, on_error: none, "
            "time_limit: <seconds per call>}, ...]. Names come from the `open_grpo.rewards` entry points "
            "(`open-grpo rewards` lists them)."
        },
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "TRL's form of `rewards`: names only, weights from `reward_weights`."},
    )
    vllm_engine_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Options passed to the colocated vLLM engine (`vllm.LLM`) on top of TRL's, e.g. "
            "{max_num_seqs: 64, enable_prefix_caching: true}."
        },
    )

    vllm_sync_chunk_mib: int = field(
        default=1024,
        metadata={
            "help": "Colocate mode: push weights to vLLM in chunks of this many MiB (one load_weights call each) "
            "instead of one call per parameter. 0 keeps TRL's per-parameter path."
        },
    )

    vllm_allreduce_fusion: str = field(
        default="auto",
        metadata={
            "help": "TP > 1, colocate: vLLM's fused all-reduce + RMSNorm. 'auto': off where NVLink multicast is off or "
            "missing (vLLM 0.26 crashes there otherwise), vLLM's choice elsewhere; 'off'; 'trtllm' (FlashInfer's IPC "
            "backend); 'vllm' (no change). See open_grpo/engine/allreduce.py."
        },
    )

    vllm_engine_process: str = field(
        default="in_process",
        metadata={
            "help": "Colocate: where the vLLM engine core runs. 'in_process' (TRL's: in the training process); "
            "'own_process' (a process of its own on this rank's GPU, weights through a shared staging buffer; TP 1, "
            "no sleep mode, no 4/8-bit base); 'auto' (own_process where it applies). See open_grpo/engine/own_process.py."
        },
    )

    vllm_kv_cache: str = field(
        default="auto",
        metadata={
            "help": "Colocate: vLLM's KV cache. 'auto' sizes it to one generation batch (max_num_seqs x max model length, "
            "with a margin) and sets vLLM's start-up share to weights + cache + overhead; 'fraction' lets vLLM take "
            "vllm_gpu_memory_utilization of the card (TRL's). See open_grpo/kv_cache_plan.py."
        },
    )

    vllm_engine_step_timeout_s: float = field(
        default=300.0,
        metadata={
            "help": "Colocate: an engine step (a few ms) that runs longer than this is logged with every thread's "
            "stack; an engine in its own process is then stopped with an error instead of hanging. 0: no watch."
        },
    )

    memory_check: str = field(
        default="error",
        metadata={
            "help": "What the preflight (open-grpo check, launch-args, the trainer at start-up) does with a memory plan "
            "over the card: 'error' stops; 'warn' only warns, for a plan you know to be pessimistic for your run."
        },
    )

    vllm_detokenize: bool = field(
        default=False,
        metadata={
            "help": "Colocate: let vLLM detokenize completions as it generates. TRL decodes the token ids itself and "
            "never reads vLLM's text, so off saves host work on every decode step."
        },
    )

    vllm_flat_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Colocate: vLLM returns the sampled-token logprobs as flat lists (the same values) instead of one "
            "dict and Logprob object per token: fewer Python objects per decode step."
        },
    )

    vllm_sampling_logprobs: str = field(
        default="auto",
        metadata={
            "help": "Colocate: 'auto' asks vLLM for the sampled-token logprobs only when the loss reads them (the vLLM "
            "importance-sampling correction or the off-policy mask); 'always' asks on every call, as TRL does."
        },
    )

    fold_old_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Skip TRL's separate no-grad forward for old logprobs when only the vLLM importance-sampling "
            "correction needs them and every completion is trained on within one optimizer step; the loss pass "
            "computes the same correction from its own logprobs (open_grpo/engine/folded_logprobs.py)."
        },
    )

    pause_gc_in_generation: bool = field(
        default=True,
        metadata={
            "help": "Colocate: pause Python's garbage collector while vLLM generates (a full collection walks the "
            "whole trainer process and stalls the decode loop); it runs again once generation returns."
        },
    )

    gradient_checkpointing_auto: bool = field(
        default=False,
        init=False,
        metadata={"help": "Set by `gradient_checkpointing: auto` (decided at start-up from the memory plan)."},
    )

    save_final_model: bool = field(
        default=True,
        metadata={"help": "Save the trained model to output_dir at the end (off for throwaway runs: sanity checks)."},
    )

    eval_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Prompts to evaluate on during training, in any form 'dataset_name' takes. When: TRL's 'eval_strategy'"
            " / 'eval_steps' / 'eval_on_start'; 'num_generations_eval' completions per prompt (see evaluation.py)."
        },
    )
    eval_dataset_config: str | None = field(default=None, metadata={"help": "Eval dataset configuration (hub only)."})
    eval_dataset_split: str = field(default="test", metadata={"help": "Split to evaluate on (hub datasets only)."})
    eval_dataset_size: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate on the first N prompts of the eval split (null: all). For 'reasoning-gym:' the number of "
            "tasks drawn (required), seeded apart from the training tasks."
        },
    )
    eval_prompt_column: str | None = field(
        default=None, metadata={"help": "Eval set's prompt column (null: as train)."}
    )
    eval_solution_column: str | None = field(
        default=None,
        metadata={"help": "Eval set's gold-answer column, given to rewards as `solution` (null: as train)."},
    )

    resume: str = field(
        default="auto",
        metadata={
            "help": "'auto': continue output_dir's run; 'never': a new run (the old one moves to previous/); 'weights': "
            "a new run from the newest checkpoint's model weights; or a checkpoint folder (open_grpo/resume.py)."
        },
    )

    completions_log_max_per_step: int | None = field(
        default=256,
        metadata={
            "help": "With 'log_completions: true': at most this many completions per logged step in "
            "<output_dir>/completions.jsonl (the first ones, whole prompt groups). null writes them all."
        },
    )

    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling: drop prompt groups whose completions all got the same reward and refill "
            "the batch with fresh prompts (open_grpo/dynamic_sampling.py)."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=3,
        metadata={
            "help": "Dynamic sampling: refill rounds per generation batch at most; then the batch is completed with "
            "zero-variance groups (advantage 0)."
        },
    )

    def __post_init__(self):
        # From the command line these arrive as JSON strings.
        if isinstance(self.rewards, str):
            self.rewards = _json_arg(
                self.rewards, "'rewards' must be a list of mappings, e.g. [{name: accuracy}]", '[{"name": "accuracy"}]'
            )
        if isinstance(self.datasets, str):
            self.datasets = _json_arg(
                self.datasets,
                "'datasets' must be a list of mappings, e.g. [{name: reasoning-gym:basic_arithmetic, weight: 1}]",
                '[{"name": "reasoning-gym:basic_arithmetic", "weight": 1}]',
            )
        if isinstance(self.vllm_engine_kwargs, str):
            self.vllm_engine_kwargs = _json_arg(
                self.vllm_engine_kwargs,
                "'vllm_engine_kwargs' must be a mapping, e.g. {max_num_seqs: 64}",
                '{"max_num_seqs": 64}',
            )


def _json_arg(text: str, expected: str, json_example: str) -> Any:
    """A YAML-valued key given as a string (a command-line override, or a plain word in the recipe) -> its value."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise RecipeError(f"{expected}; on the command line as JSON ('{json_example}'); got {text!r}") from None
