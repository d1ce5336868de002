"""One row of `open-grpo bench`, in its own process: build the trainer the row describes, train warm-up + timed
steps on the benchmark workload, and write the per-step phase times to a JSON file.

    python -m open_grpo.bench.worker --row trl-default --model PATH --out row.json [--steps 5 --warmup 2]
    accelerate launch --num_processes 2 --config_file accelerate_configs/zero2.yaml -m open_grpo.bench.worker ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def build_dataset(tokenizer, n_prompts: int, prompt_tokens: int, seed: int):
    """Arithmetic questions padded with context to about `prompt_tokens` tokens (no extra packages: GPU hosts)."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    filler = " ".join(["Consider the numbers carefully and show every intermediate step."] * 64)
    context = tokenizer.decode(tokenizer(filler).input_ids[: max(0, prompt_tokens - 64)])
    rows = []
    for _ in range(n_prompts):
        a, b, c = (rng.randint(-99, 99) for _ in range(3))
        rows.append({"prompt": [{"role": "user", "content": f"{context}\nCalculate {a} + {b} * {c}."}],
                     "solution": str(a + b * c)})  # fmt: skip
    return Dataset.from_list(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--row", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--per-device", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--completion-len", type=int, default=1024)
    p.add_argument("--prompt-len", type=int, default=512)
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from ..rewards.registry import build_rewards, parse_reward_specs
    from ..trainer import OpenGRPOTrainer
    from .variants import ROWS

    row = dict(ROWS[args.row])
    kind = row.pop("trainer")
    engine_kwargs = row.pop("vllm_engine_kwargs", None)
    sync_chunk = row.pop("vllm_sync_chunk_mib", 0)
    allreduce = row.pop("vllm_allreduce_fusion", "auto")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    world = int(os.environ.get("WORLD_SIZE", 1))
    dataset = build_dataset(tokenizer, 512, args.prompt_len // 2, seed=0)
    rewards, weights = build_rewards(parse_reward_specs([{"name": "accuracy"}, {"name": "format"}]))
    workload = dict(
        output_dir=f"/tmp/bench-{args.row}",
        per_device_train_batch_size=args.per_device,
        num_generations=args.generations,
        max_completion_length=args.completion_len,
        bf16=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # the CPU path is for tests with an engine double
        report_to="none",
        use_vllm=True,
        vllm_mode="colocate",
        max_steps=args.warmup + args.steps,
        logging_steps=1,
        save_strategy="no",
        reward_weights=weights,
        seed=0,
        model_init_kwargs={"dtype": "bfloat16" if torch.cuda.is_available() else "float32"},
    )
    config = GRPOConfig(**{**workload, **row})
    # Both kinds run through OpenGRPOTrainer for its phase timers; for "trl" rows it adds no engine kwargs, no
    # length cap and TRL's own weight sync, so they behave exactly as plain GRPOTrainer.
    trainer = OpenGRPOTrainer(
        model=args.model,
        reward_funcs=rewards,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        vllm_engine_kwargs=engine_kwargs if kind == "open_grpo" else None,
        max_prompt_tokens=args.prompt_len if kind == "open_grpo" else None,
        vllm_sync_chunk_mib=sync_chunk if kind == "open_grpo" else 0,
        vllm_allreduce_fusion=allreduce if kind == "open_grpo" else "vllm",
    )
    start = time.time()
    trainer.train()
    rows = [h for h in trainer.state.log_history if "time/step" in h]
    timed = rows[args.warmup :]
    if trainer.accelerator.is_main_process:
        phases = ["generation", "weight_sync", "rewards", "logprobs", "scoring_other", "train"]
        result = {
            "name": args.row,
            "card": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "gpus": world,
            "config": {"trainer": kind, **row, "vllm_engine_kwargs": engine_kwargs, "vllm_sync_chunk_mib": sync_chunk},
            "steps": [{k: v for k, v in r.items()} for r in timed],
            "step_time_s_median": statistics.median(r["time/step"] for r in timed),
            "completions_per_s_per_gpu": statistics.median(r["throughput/completions_per_s_per_gpu"] for r in timed),
            "completion_tokens_per_s_per_gpu": statistics.median(
                r["throughput/completion_tokens_per_s_per_gpu"] for r in timed
            ),
            "completion_tokens_mean": statistics.mean(r["completions/mean_length"] for r in timed),
            "peak_mem_gib": max(r.get("memory/peak_gib", 0.0) for r in timed),
            "phases": {ph: statistics.median(r.get(f"time/{ph}", 0.0) for r in timed) for ph in phases},
            "wall_s": time.time() - start,
        }
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
