"""Run by tests/test_resume.py in a subprocess: `open_grpo.train` on a recipe, recording the prompts of every step
to $PROMPT_LOG, and (with $KILL_AT_STEP=k) SIGKILLing itself right after checkpoint k is marked complete."""

import json
import os
import signal
import sys

from open_grpo.train import cli
from open_grpo.trainer import OpenGRPOTrainer

_save, _score = OpenGRPOTrainer._save_checkpoint, OpenGRPOTrainer._generate_and_score_completions


def save_then_maybe_die(self, model, trial):
    _save(self, model, trial)
    if self.state.global_step == int(os.environ.get("KILL_AT_STEP", -1)):
        os.kill(os.getpid(), signal.SIGKILL)


def score_and_log(self, inputs):
    with open(os.environ["PROMPT_LOG"], "a") as f:
        f.write(
            json.dumps({"step": self.state.global_step, "prompts": [x["prompt"][-1]["content"] for x in inputs]})
            + "\n"
        )
    return _score(self, inputs)


OpenGRPOTrainer._save_checkpoint = save_then_maybe_die
OpenGRPOTrainer._generate_and_score_completions = score_and_log
sys.exit(cli(sys.argv[1:]))
