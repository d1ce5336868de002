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

from . import preemption, resume
from .config import RecipeError, load_recipe
from .models import resolve_model

logger = logging.getLogger("open_grpo")


def setup_logging(is_main: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(recipe: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    # First, before anything slow: SIGUSR1/SIGTERM/the stop file during start-up exit 75 instead of killing us.
    stop = preemption.install()
    # Config: every recipe, reward and data problem is raised here, before a model or a GPU is touched.
    cfg = load_recipe(recipe, overrides)
    script, training, model_args = cfg.script, cfg.training, cfg.model
    setup_logging(training.process_index == 0)
    logger.info("recipe %s -> %s", cfg.path, training.output_dir)

    # Resume: which run output_dir holds and where to continue it (resume.py); a checkpoint of another layout or
    # with damaged files is refused here, before any model. A finished run says so and is not trained again.
    run = resume.plan(cfg, overrides)
    if run.finished:
        logger.info(run.finished)
        return {}
    state = training.distributed_state
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
    from trl import get_quantization_config

    from .data import load_prompts
    from .environments.setup import trainer_tool_kwargs
    from .evaluation import load_eval_prompts
    from .lora import peft_config
    from .metrics import CompactProgress, MetricsFile, format_summary, plot_rewards, read_metrics, summary
    from .mixture import load_mixture
    from .rewards.registry import build_rewards, parse_reward_specs
    from .trainer import OpenGRPOTrainer, trainer_options

    transformers.set_seed(training.seed)

    # Rewards: resolved through the `open_grpo.rewards` entry points.
    specs = parse_reward_specs(script.rewards, script.reward_funcs, training.reward_weights)
    reward_funcs, training.reward_weights = build_rewards(specs)
    logger.info("rewards: %s", ", ".join(f"{s.name} x{s.weight}" for s in specs))

    # Tokenizer and data (`resume: weights`: the tokenizer and model saved in the checkpoint).
    model_path = run.model_path or resolve_model(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        model_path, revision=model_args.model_revision, trust_remote_code=training.trust_remote_code
    )
    load = load_mixture if script.datasets else load_prompts  # `datasets:` mixes several sources
    dataset = load(script, tokenizer, seed=training.seed)
    eval_dataset = load_eval_prompts(script, tokenizer, seed=training.seed)  # None without eval_dataset_name
    # Tools and environments (environments/): TRL's tools= / environment_factory=, or {} without them.
    tools = trainer_tool_kwargs(script, training, tokenizer, model_args.model_name_or_path, [dataset, eval_dataset])

    # Model: TRL loads it from the path with these arguments (and hands the same path to vLLM).
    training.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training.model_init_kwargs or {}),
    }
    # LoRA / QLoRA (use_peft, lora.py): TRL wraps the model in the adapter and pushes merged weights to vLLM.
    peft = peft_config(model_args)
    quantization = get_quantization_config(model_args)

    trainer = OpenGRPOTrainer(
        model=str(model_path),
        reward_funcs=reward_funcs,
        args=training,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft,
        quantization_config=quantization,
        callbacks=[MetricsFile(training.output_dir)],
        **trainer_options(script),
        **tools,
    )

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
    return result


USAGE = "usage: python -m open_grpo.train --config RECIPE [--key value ...]"


def cli(argv: list[str] | None = None) -> int:
    """`python -m open_grpo.train --config RECIPE [--key value ...]` (the form `accelerate launch -m` uses)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [part for word in argv for part in (word.split("=", 1) if word.startswith("--config=") else [word])]
    i = argv.index("--config") if "--config" in argv else -1
    if i < 0 or i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        print(f"{USAGE}\n(--config needs a recipe name or path)", file=sys.stderr)
        return 2
    try:
        main(argv[i + 1], argv[:i] + argv[i + 2 :])
    except RecipeError as e:
        print(f"open-grpo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
