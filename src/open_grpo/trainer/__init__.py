"""The trainer: TRL's GRPOTrainer subclassed (grpo_trainer.py) with its config (config.py: OpenGRPOConfig) and
one builder for train and bench (builder.py), and its features: checkpoints marked complete (checkpoints.py),
clean stops on preemption (preemption.py), DAPO dynamic sampling, the completions log, evaluation with pass@k,
step telemetry and metrics files, LoRA/QLoRA, gradient checkpointing decided by the memory plan. Importing this
package loads nothing heavy: import the module you need."""
