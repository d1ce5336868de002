"""One row of `open-grpo bench`, in its own process: build the trainer the row describes, train warm-up + measured
steps on the benchmark workload, and write the per-step times to a JSON file.

    python -m open_grpo.bench.worker --row open_grpo --model PATH --out row.json [--steps 8 --warmup 2]
    accelerate launch --num_processes 2 --config_file accelerate_configs/zero2.yaml -m open_grpo.bench.worker ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from open_grpo.bench.variants import REFERENCE_RECIPE, ROWS, steps_per_cycle
from open_grpo.recipe import load_recipe, recipe_from_keys
from open_grpo.recipe.options import trl_behaviour
from open_grpo.recipe.overrides import to_words
from open_grpo.trainer.builder import build_trainer

START = time.time()  # start-up (imports, model, engine) is measured from here
BENCH_DATASET = "open_grpo.bench.worker:build_dataset"  # a TRL row's `dataset_name`: the rows train on build_dataset


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


def workload(args, output_dir: str, gpu: bool) -> dict:
    """What every row shares: model, batch, lengths, steps, output, logging (GRPOConfig / recipe keys)."""
    return {
        "per_device_train_batch_size": args.per_device,
        "num_generations": args.generations,
        "max_completion_length": args.completion_len,
        "max_steps": whole_cycles(args.warmup, args.cycle) + whole_cycles(args.steps, args.cycle),
        "output_dir": output_dir,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 0,
        "use_vllm": True,
        **({} if gpu else {"bf16": False, "use_cpu": True}),  # the CPU path is for tests with the engine double
    }


def row_recipe(row: dict, args, output_dir: str, gpu: bool, model_path: str):
    """The checked recipe of a row. A recipe row: the reference recipe through open_grpo's recipe loading, the workload
    and the row's keys as overrides. A TRL row: TRL's defaults, open_grpo's options at TRL's behaviour
    (`trl_behaviour`), the workload and the row's keys."""
    if row["kind"] == "recipe":
        keys = {**workload(args, output_dir, gpu), "model_name_or_path": model_path, "max_prompt_tokens": args.prompt_len,
                "save_final_model": False, **({} if gpu else {"dtype": "float32"}), **row["keys"]}  # fmt: skip
        return load_recipe(REFERENCE_RECIPE, to_words(keys))
    model = {"model_name_or_path": model_path, "dtype": "bfloat16" if gpu else "float32"}
    keys = {**workload(args, output_dir, gpu), **model, "bf16": gpu, "vllm_mode": "colocate", **trl_behaviour(),
            "rewards": [{"name": "accuracy"}, {"name": "format"}], "dataset_name": BENCH_DATASET, **row["keys"]}  # fmt: skip
    return recipe_from_keys(keys, source=f"bench row {args.row}")


def whole_cycles(n: int, cycle: int) -> int:
    """`n` rounded up to whole cycles of `cycle` optimizer steps."""
    return -(-n // cycle) * cycle


def merge_cycles(steps: list[dict], cycle: int) -> list[dict]:
    """Steps of an off-policy row as one record per engine call (`cycle` optimizer steps): times summed, the
    completions of the cycle over its time, the other metrics' mean over the steps that logged them."""
    if cycle <= 1:
        return steps
    merged = []
    for i in range(0, len(steps) - cycle + 1, cycle):
        group = steps[i : i + cycle]
        seconds = sum(r["time/step"] for r in group)
        numeric = {k for r in group for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        record = {k: statistics.mean(r[k] for r in group if k in r) for k in numeric}
        record.update({k: sum(r.get(k, 0.0) for r in group) for k in record if k.startswith("time/")})
        for metric in ("throughput/completions_per_s_per_gpu", "throughput/completion_tokens_per_s_per_gpu"):
            record[metric] = sum(r[metric] * r["time/step"] for r in group) / seconds
        record.update({k: max(r.get(k, 0.0) for r in group) for k in record if k.startswith("memory/")})
        record["optimizer_steps"] = cycle
        merged.append(record)
    return merged


def summarize(name: str, timed: list[dict], config: dict, card: str, world: int) -> dict:
    """A row's result: every measured step (off-policy rows: every engine call's cycle of steps), medians and
    spread, memory (the training process's and, for an engine in its own process, the engine process's), start-up
    time."""
    timed = merge_cycles(timed, steps_per_cycle(name))
    per_s = [r["throughput/completions_per_s_per_gpu"] for r in timed]
    step_s = [r["time/step"] for r in timed]
    phases = ["generation", "weight_sync", "rewards", "logprobs", "scoring_other", "train"]
    return {
        "name": name,
        "card": card,
        "gpus": world,
        "config": config,
        "steps": timed,
        "step_time_s_median": statistics.median(step_s),
        "step_time_s_min": min(step_s),
        "step_time_s_max": max(step_s),
        "completions_per_s_per_gpu": statistics.median(per_s),
        "completions_per_s_per_gpu_min": min(per_s),
        "completions_per_s_per_gpu_max": max(per_s),
        "completion_tokens_per_s_per_gpu": statistics.median(
            r["throughput/completion_tokens_per_s_per_gpu"] for r in timed
        ),
        "completion_tokens_mean": statistics.mean(r["completions/mean_length"] for r in timed),
        "max_memory_allocated_gib": max(r.get("memory/peak_gib", 0.0) for r in timed),
        "max_memory_reserved_gib": max(r.get("memory/peak_reserved_gib", 0.0) for r in timed),
        "engine_process_reserved_gib": max(r.get("memory/engine_process_reserved_gib", 0.0) for r in timed),
        "peak_total_gib": max(
            r.get("memory/peak_reserved_gib", 0.0) + r.get("memory/engine_process_reserved_gib", 0.0) for r in timed
        ),
        "device_used_gib": max(r.get("memory/device_used_gib", 0.0) for r in timed),
        "off_policy": bool(ROWS[name].get("off_policy")),
        "staleness_mean": statistics.mean(r.get("offpolicy/staleness", 0.0) for r in timed),
        "phases": {ph: statistics.median(r.get(f"time/{ph}", 0.0) for r in timed) for ph in phases},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--row", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--per-device", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--completion-len", type=int, default=1024)
    p.add_argument("--prompt-len", type=int, default=512)
    args = p.parse_args(argv)
    args.cycle = steps_per_cycle(args.row)

    import torch
    from transformers import AutoTokenizer

    row = ROWS[args.row]
    gpu = torch.cuda.is_available()
    output_dir = os.path.join(
        os.environ.get("OPEN_GRPO_BENCH_TMP", os.path.join(tempfile.gettempdir(), "open-grpo-bench")),
        f"out-{args.row}",
    )
    recipe = row_recipe(row, args, output_dir, gpu, args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dataset = build_dataset(tokenizer, 512, args.prompt_len // 2, seed=0)
    # A recipe that evaluates (eval_on_start, eval_steps) gets a small eval set of the same kind: its evaluation runs
    # as in training (before the first step; eval_steps lies past the bench's steps) and is kept out of the telemetry.
    evaluates = recipe.training.eval_strategy != "no" or recipe.training.eval_on_start
    eval_dataset = build_dataset(tokenizer, 8, args.prompt_len // 2, seed=1) if evaluates else None
    # TRL rows run through OpenGRPOTrainer too, for its phase timers: with its options at TRL's behaviour it adds no
    # engine kwargs, no length cap and TRL's own weight sync and sampling, so they behave exactly as plain GRPOTrainer.
    trainer = build_trainer(recipe, tokenizer=tokenizer, train_dataset=dataset, eval_dataset=eval_dataset,
                            model_path=args.model)  # fmt: skip
    config = trainer.args
    startup_s = time.time() - START
    trainer.train()
    timed = [h for h in trainer.state.log_history if "time/step" in h][whole_cycles(args.warmup, args.cycle) :]
    if trainer.accelerator.is_main_process:
        recorded = {"kind": row["kind"], "keys": row["keys"], "gradient_checkpointing": config.gradient_checkpointing,
                    "optimizer_steps_per_record": args.cycle}  # fmt: skip
        card = torch.cuda.get_device_name() if gpu else "cpu"
        result = summarize(args.row, timed, recorded, card, int(os.environ.get("WORLD_SIZE", 1)))
        result.update(startup_s=startup_s, wall_s=time.time() - START)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
