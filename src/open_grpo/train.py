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

import logging
import os
import sys

from .checkpoints import resume_from
from .config import RecipeError, load_recipe
from .models import resolve_model
from .preemption import PREEMPTED_EXIT, PREEMPTED_MARKER

logger = logging.getLogger("open_grpo")


def setup_logging(is_main: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(recipe: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    # Config: every recipe, reward and data problem is raised here, before a model or a GPU is touched.
    cfg = load_recipe(recipe, overrides)
    script, training, model_args = cfg.script, cfg.training, cfg.model
    setup_logging(training.process_index == 0)
    logger.info("recipe %s -> %s", cfg.path, training.output_dir)
    if (
        "wandb" in (training.report_to or [])
        and not os.environ.get("WANDB_API_KEY")
        and "WANDB_MODE" not in os.environ
    ):
        os.environ["WANDB_MODE"] = "offline"
        logger.info("no WANDB_API_KEY: W&B logs offline to ./wandb (sync later with `wandb sync`)")

    import transformers
    from transformers import AutoTokenizer
    from transformers.trainer_callback import ProgressCallback

    from .data import load_prompts
    from .metrics import CompactProgress, MetricsFile, format_summary, plot_rewards, read_metrics, summary
    from .rewards.registry import build_rewards, parse_reward_specs
    from .trainer import OpenGRPOTrainer, trainer_options

    transformers.set_seed(training.seed)

    # Rewards: resolved through the `open_grpo.rewards` entry points.
    specs = parse_reward_specs(script.rewards, script.reward_funcs, training.reward_weights)
    reward_funcs, training.reward_weights = build_rewards(specs)
    logger.info("rewards: %s", ", ".join(f"{s.name} x{s.weight}" for s in specs))

    # Tokenizer and data.
    model_path = resolve_model(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_path, revision=model_args.model_revision, trust_remote_code=training.trust_remote_code
    )
    dataset = load_prompts(script, tokenizer, seed=training.seed)

    # Model: TRL loads it from the path with these arguments (and hands the same path to vLLM).
    training.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training.model_init_kwargs or {}),
    }

    trainer = OpenGRPOTrainer(
        model=str(model_path),
        reward_funcs=reward_funcs,
        args=training,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[MetricsFile(training.output_dir)],
        **trainer_options(script),
    )

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(CompactProgress)

    # Resume: an explicit `resume_from_checkpoint` wins; else `resume: auto` takes the newest complete checkpoint.
    checkpoint = training.resume_from_checkpoint or resume_from(training.output_dir, script.resume)
    trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.preempted:  # the checkpoint of this step is saved and marked: the job script requeues us
        logger.warning("preempted at step %d: exiting %d for a requeue", trainer.state.global_step, PREEMPTED_EXIT)
        if trainer.accelerator.is_main_process:
            with open(os.path.join(training.output_dir, PREEMPTED_MARKER), "w") as f:
                f.write(f"{trainer.state.global_step}\n")
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()
        sys.exit(PREEMPTED_EXIT)
    if script.save_final_model:
        trainer.save_model(training.output_dir)

    result = {}
    if trainer.accelerator.is_main_process:
        rows = read_metrics(os.path.join(training.output_dir, "metrics.jsonl"))
        plot_rewards(rows, os.path.join(training.output_dir, "reward_curve.png"), title=f"{cfg.path.stem}: reward")
        result = summary(rows)
        print(format_summary(result, training.output_dir))
    trainer.accelerator.wait_for_everyone()  # leave together: a rank tearing down its groups alone can hang the rest
    trainer.accelerator.end_training()
    return result


def cli(argv: list[str] | None = None) -> int:
    """`python -m open_grpo.train --config RECIPE [--key value ...]` (the form `accelerate launch -m` uses)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        print("usage: python -m open_grpo.train --config RECIPE [--key value ...]", file=sys.stderr)
        return 2
    i = argv.index("--config")
    recipe = argv[i + 1]
    try:
        main(recipe, argv[:i] + argv[i + 2 :])
    except RecipeError as e:
        print(f"open-grpo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
