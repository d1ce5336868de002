"""Run by tests/test_resume.py in a subprocess: `open_grpo.train` on a recipe, recording the prompts of every step
(and the rank) to $PROMPT_LOG, with ways to interrupt it at exact points:
  $KILL_AT_STEP=k              SIGKILL right after checkpoint k is marked complete;
  $KILL_BEFORE_MARK_AT_STEP=k  SIGKILL after checkpoint k is written, before its COMPLETE marker;
  $USR1_DURING_STARTUP=1       SIGUSR1 to itself while the prompts load (start-up, before the model)."""

import json
import os
import signal
import sys

import open_grpo.data.prompts
import open_grpo.trainer.checkpoints
import open_grpo.trainer.grpo_trainer
from open_grpo.train import cli
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer

_save, _score = OpenGRPOTrainer._save_checkpoint, OpenGRPOTrainer._generate_and_score_completions
_load_prompts = open_grpo.data.prompts.load_prompts


def save_then_maybe_die(self, model, trial):
    _save(self, model, trial)
    if self.state.global_step == int(os.environ.get("KILL_AT_STEP", -1)):
        os.kill(os.getpid(), signal.SIGKILL)


def die_before_mark(mark):
    def mark_or_die(folder, step, *args, **kwargs):
        if step == int(os.environ.get("KILL_BEFORE_MARK_AT_STEP", -1)):
            os.kill(os.getpid(), signal.SIGKILL)
        return mark(folder, step, *args, **kwargs)

    return mark_or_die


def score_and_log(self, inputs):
    record = {"step": self.state.global_step, "rank": self.accelerator.process_index,
              "prompts": [x["prompt"][-1]["content"] for x in inputs]}  # fmt: skip
    with open(os.environ["PROMPT_LOG"], "a") as f:
        f.write(json.dumps(record) + "\n")
    return _score(self, inputs)


def load_prompts_signalled(*args, **kwargs):
    if os.environ.get("USR1_DURING_STARTUP"):
        os.kill(os.getpid(), signal.SIGUSR1)
    return _load_prompts(*args, **kwargs)


OpenGRPOTrainer._save_checkpoint = save_then_maybe_die
OpenGRPOTrainer._generate_and_score_completions = score_and_log
open_grpo.data.prompts.load_prompts = load_prompts_signalled
for module in (open_grpo.trainer.checkpoints, open_grpo.trainer.grpo_trainer):  # where the marker is written from
    if hasattr(module, "mark_complete"):
        module.mark_complete = die_before_mark(module.mark_complete)
sys.exit(cli(sys.argv[1:]))
