"""GRPO training with vLLM colocated in the training processes (TRL's GRPOTrainer underneath).

GRPO samples `num_generations` completions per prompt, scores them with the recipe's rewards, and pushes up the
log-probability of the completions that beat their group's mean reward (a policy gradient with the group as baseline).

    make demo                                                # CPU, no hub: tiny random model, ~5 minutes
    python -m open_grpo.train --config recipes/demo.yaml     # the same, by hand
    accelerate launch --config_file accelerate_configs/single_gpu.yaml -m open_grpo.train \
        --config recipes/qwen-math-1.5b.yaml                 # 1 GPU
    make train RECIPE=qwen-math-1.5b NUM_GPUS=8              # N GPUs (ZeRO-3, vLLM colocated on each)
    open-grpo train qwen-math-1.5b --max_steps 10            # in this process, recipe by name, with overrides
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

from open_grpo.data.models import resolve_model
from open_grpo.errors import EXIT_CONFIG_ERROR, EXIT_OK, RecipeError
from open_grpo.recipe import load_recipe
from open_grpo.runs import lock, resume
from open_grpo.trainer import preemption
from open_grpo.trainer.lora import runtime_problems

logger = logging.getLogger("open_grpo")


def setup_logging(is_main: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(recipe: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    # First, before anything slow: SIGUSR1/SIGTERM/SIGINT/the stop file during start-up exit 75 instead of killing us.
    stop = preemption.install()
    # Config: every recipe, reward and data-key problem is raised here, for this launch's world size, before torch is
    # imported; then TRL's own config (grpo_config.py) has the last word, before a model or a GPU is touched.
    cfg = load_recipe(recipe, overrides)
    from open_grpo.trainer.config import trainer_config

    cfg = dataclasses.replace(cfg, training=trainer_config(cfg))
    script, training, model_args = cfg.script, cfg.training, cfg.model
    problems = runtime_problems(model_args, training)  # what this machine lacks to run it (QLoRA without CUDA)
    if problems:
        raise RecipeError(problems, cfg.path)
    setup_logging(training.process_index == 0)
    logger.info("recipe %s -> %s", cfg.path, training.output_dir)

    # One launch per output_dir: rank 0 takes <output_dir>/LOCK (released at exit); another launch holding it is
    # refused here on every rank (exit 2), before anything is written (runs/lock.py).
    state = training.distributed_state
    lock.acquire(training.output_dir, state)
    # Resume: which run output_dir holds and where to continue it (resume.py); a checkpoint of another layout, model
    # or with damaged files is refused here, before any model. A finished run says so and is not trained again.
    run = resume.plan(cfg)
    if run.finished:
        logger.info(run.finished)
        lock.release(training.output_dir)
        return {}
    resume.start(run, training.output_dir, state)
    preemption.warn_if_margin_short(model_args.model_name_or_path, run.layout.zero_stage)
    if stop.agreed(state):
        preemption.exit_for_requeue(training.output_dir, run.step, state)
    if (
        "wandb" in (training.report_to or [])
        and not os.environ.get("WANDB_API_KEY")
        and "WANDB_MODE" not in os.environ
    ):
        os.environ["WANDB_MODE"] = "offline"
        logger.info("no WANDB_API_KEY: W&B logs offline to ./wandb (sync later with `wandb sync`)")

    # Imported only now, with the stop handler installed: a preemption signal during these (torch, TRL, transformers:
    # seconds) still exits 75, and recipe errors above come before them.
    import transformers
    from transformers import AutoTokenizer
    from transformers.trainer_callback import ProgressCallback

    from open_grpo.data.mixture import load_mixture
    from open_grpo.data.prompts import load_prompts, load_together
    from open_grpo.environments.setup import trainer_tool_kwargs
    from open_grpo.sandbox.recipe import recipe_sandbox
    from open_grpo.trainer.builder import build_trainer
    from open_grpo.trainer.evaluation import load_eval_prompts
    from open_grpo.trainer.metrics import (
        CompactProgress,
        MetricsFile,
        format_summary,
        plot_rewards,
        read_metrics,
        summary,
    )

    transformers.set_seed(training.seed)
    recipe_sandbox(cfg)  # rewards that run code: the sandbox's canary must hold here, before any model loads

    # Tokenizer and data (`resume: weights`: the tokenizer and model saved in the checkpoint).
    model_path = run.model_path or resolve_model(model_args.model_name_or_path, model_args.model_revision)
    tokenizer = AutoTokenizer.from_pretrained(
        model_path, revision=model_args.model_revision, trust_remote_code=training.trust_remote_code
    )
    load = load_mixture if script.datasets else load_prompts  # `datasets:` mixes several sources
    limit = training.max_prompt_tokens
    eval_dataset, dataset = load_together(  # the eval set (None without eval_dataset_name) and the training set:
        lambda: load_eval_prompts(script, tokenizer, seed=training.seed, max_prompt_tokens=limit),  # problems of both
        lambda: load(script, tokenizer, seed=training.seed, max_prompt_tokens=limit),  # in one message
    )
    # Tools and environments (environments/): TRL's tools= / environment_factory=, or {} without them.
    tools = trainer_tool_kwargs(script, training, tokenizer, model_args.model_name_or_path, [dataset, eval_dataset])

    # The trainer (trainer_builder.py, shared with the benchmark): rewards through the registry, TRL loads the model
    # from the path (and hands the same path to vLLM), LoRA / QLoRA wrapped by TRL, tools.
    trainer = build_trainer(cfg, tokenizer=tokenizer, train_dataset=dataset, eval_dataset=eval_dataset,
                            callbacks=[MetricsFile(training.output_dir)], model_path=model_path, training=training,
                            tool_kwargs=tools)  # fmt: skip

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgress)
    trainer.run_stamp = run.stamp

    if stop.agreed(state):  # asked during start-up: no step was trained, nothing to save
        preemption.exit_for_requeue(training.output_dir, run.step, state, trainer.accelerator.end_training)
    trainer.train(resume_from_checkpoint=run.checkpoint)
    if trainer.preempted:  # the checkpoint of this step is saved and marked: the job script requeues us
        step = trainer.state.global_step
        preemption.exit_for_requeue(training.output_dir, step, trainer.accelerator, trainer.accelerator.end_training)
    if script.save_final_model:
        trainer.save_model(training.output_dir)

    result = {}
    if trainer.accelerator.is_main_process:
        rows = read_metrics(os.path.join(training.output_dir, "metrics.jsonl"))
        plot_rewards(rows, os.path.join(training.output_dir, "reward_curve.png"), title=f"{cfg.path.stem}: reward")
        result = summary(rows)
        print(format_summary(result, training.output_dir))
        resume.finish(training.output_dir, trainer.state, training)
    trainer.accelerator.wait_for_everyone()  # leave together: a rank tearing down its groups alone can hang the rest
    trainer.accelerator.end_training()
    lock.release(training.output_dir)
    return result


USAGE = "usage: python -m open_grpo.train --config RECIPE [--key value ...]"


def cli(argv: list[str] | None = None) -> int:
    """`python -m open_grpo.train --config RECIPE [--key value ...]` (the form `accelerate launch -m` uses)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [part for word in argv for part in (word.split("=", 1) if word.startswith("--config=") else [word])]
    i = argv.index("--config") if "--config" in argv else -1
    if i < 0 or i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        print(f"{USAGE}\n(--config needs a recipe name or path)", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        main(argv[i + 1], argv[:i] + argv[i + 2 :])
    except RecipeError as e:
        print(f"open-grpo: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(cli())
