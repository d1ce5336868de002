"""open_grpo's own recipe keys that are not trainer options (`ScriptArguments`): data, prompts, rewards, the eval
set, what a launch does with its output_dir.

The trainer's options are `OpenGRPOConfig`'s fields: open_grpo's own (recipe/options.py) and TRL's `GRPOConfig`;
model keys are `trl.ModelConfig`'s. A recipe mixes all of them (recipe/parsing.py checks them together).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GENERATOR_PREFIX = "reasoning-gym:"
MIXTURE_STOPPING_STRATEGIES = ("first_exhausted", "all_exhausted", "all_exhausted_without_replacement")
RESUME_CHOICES = ("auto", "never", "weights")


@dataclass
class ScriptArguments:
    """open_grpo's data, reward and run keys. Trainer options live in `OpenGRPOConfig`, model keys in `trl.ModelConfig`."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Where prompts come from: a hub id (e.g. 'DigitalLearningGmbH/MATH-lighteval'), a local file or "
            "folder of .jsonl/.json/.parquet/.csv files, or an offline generator 'reasoning-gym:<task>'."
        },
    )
    datasets: list | None = field(
        default=None,
        metadata={
            "help": "A mixture instead of 'dataset_name': [{name, weight, split, size, config, prompt_column, "
            "solution_column, system_prompt}, ...], mixed by weight (open_grpo/data/mixture.py). Keys an entry leaves out "
            "take the top-level value.",
            "example": "[{name: reasoning-gym:basic_arithmetic, weight: 1}]",
        },
    )
    mixture_stopping_strategy: str = field(
        default="first_exhausted",
        metadata={
            "help": "When a 'datasets' mixture ends (datasets.interleave_datasets): 'first_exhausted' (no row twice), "
            "'all_exhausted' (smaller sources repeat until every row is used), 'all_exhausted_without_replacement'.",
            "choices": MIXTURE_STOPPING_STRATEGIES,
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
    rewards: list | None = field(
        default=None,
        metadata={
            "help": "Rewards to combine: [{name: accuracy, weight: 1.0, <reward parameter>: value, on_error: none, "
            "time_limit: <seconds per call>}, ...]. Names come from the `open_grpo.rewards` entry points "
            "(`open-grpo rewards` lists them).",
            "example": "[{name: accuracy}]",
        },
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": "TRL's form of `rewards`: names only, weights from `reward_weights`."},
    )
    environment: dict | str | None = field(
        default=None,
        metadata={
            "help": "A tool-using environment for every rollout: {name: python_exec, <parameter>: value}, or one per "
            "value of the dataset's 'environment' column: {<value>: {name: ...}, ...}. Names come from the "
            "`open_grpo.environments` entry points (`open-grpo environments`); its public methods are the tools."
        },
    )
    tools: list | None = field(
        default=None,
        metadata={
            "help": "Standalone tools the model may call: [calculator, {name: my_tool, <parameter>: value}]. Names come "
            "from the `open_grpo.tools` entry points (`open-grpo tools`). See also TRL's max_tool_calling_iterations."
        },
    )
    sandbox: dict | None = field(
        default=None,
        metadata={
            "help": "Sandboxed code execution for rewards and tools that run code (code_tests, python_exec): {backend: "
            "auto, workers: <calls at once>, wall_s: 5.0, cpu_s: 5.0, memory_mb: 512, file_size_mb: 16, processes: 32, "
            "open_files: 64, output_bytes: 65536}. backend: 'bwrap', 'process' or 'auto' (README, 'Sandboxed code "
            "execution')."
        },
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
            "a new run from the newest checkpoint's model weights; or a checkpoint folder (open_grpo/runs/resume.py)."
        },
    )
