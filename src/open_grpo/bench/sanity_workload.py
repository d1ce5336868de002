"""The sanity workload: a Qwen2.5-1.5B-shaped model with random weights learning the `lowercase_letters` reward
(share of lowercase ASCII letters in the completion; a random model starts near 0.6), 32 completions a step
(4 prompts x 8), 64 completion tokens, temperature 0.1, learning rate 2e-5 constant, beta 0.

Temperature 0.1: at temperature 1 a random model's next-token distribution is nearly uniform over the 151k-token
vocabulary (entropy ~11.6 of ln 151936 = 11.9 nats), nothing it samples recurs, and no learning rate up to 1e-3
moved the reward within 10 steps (a 2-layer model of the same width, on CPU). At 0.1 a few candidates per position
carry the mass and the reward climbs. TRL applies the same temperature to the training log-probs.

Used by bench/sanity_check.py (the same learning in every layout) and bench/offpolicy_curve.py (off-policy
against on-policy).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

GLOBAL_COMPLETIONS = 32
TEMPERATURE = 0.1
LEARNING_RATE = 2e-5
LAYOUTS = {  # name: (GPUs, training processes, vLLM tensor parallel size, vllm mode)
    "tp1": (1, 1, 1, "colocate"),
    "tp2": (2, 2, 2, "colocate"),
    "dp2": (2, 2, 1, "colocate"),
    "server": (2, 1, 1, "server"),
}


def recipe(model: str, data: str, layout: str, seed: int, steps: int, lr: float, out: str) -> dict:
    """The sanity workload's recipe for `layout`: the same global batch in every layout."""
    _, procs, tp, mode = LAYOUTS[layout]
    return {
        "model_name_or_path": model,
        "dtype": "float32",  # fp32 master weights, bf16 autocast: pure-bf16 updates this small would round away
        "attn_implementation": "sdpa",
        "dataset_name": data,
        "prompt_column": "problem",
        "solution_column": "solution",
        "system_prompt": "Answer in plain lowercase english words.",
        "max_prompt_tokens": 128,
        "rewards": [{"name": "lowercase_letters", "weight": 1.0}],
        "use_vllm": True,
        "vllm_mode": mode,
        "vllm_tensor_parallel_size": tp,
        "vllm_gpu_memory_utilization": 0.3,
        "bf16": True,
        "num_generations": 8,
        "per_device_train_batch_size": GLOBAL_COMPLETIONS // procs,
        "max_completion_length": 64,
        "temperature": TEMPERATURE,
        "learning_rate": lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "beta": 0.0,
        "max_steps": steps,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "save_final_model": False,
        "resume": "never",  # every invocation trains afresh (an earlier attempt in --out moves to previous/)
        "report_to": "none",
        "seed": seed,
        "output_dir": out,
    }


def write_prompts(path: Path, n: int = 512) -> None:
    """The workload's prompts (arithmetic questions; the reward ignores their answers)."""
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            a, b, c = (rng.randint(-99, 99) for _ in range(3))
            f.write(json.dumps({"problem": f"Calculate {a} + {b} * {c}.", "solution": str(a + b * c)}) + "\n")
