"""Run by tests/test_multinode.py on each of two simulated nodes (`torchrun --nnodes 2 --node_rank N`, static
rendezvous on localhost, gloo): colocated training against the vLLM engine double, recording per rank what its
engine got and was built with. With $TOUCH_STOP_AT_STEP=k, this node's first rank creates this node's stop file
($OPEN_GRPO_STOP_FILE) at the end of step k, as the job script's USR1 trap would on that node only."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_vllm  # noqa: E402

log = fake_vllm.record_generations()

from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer  # noqa: E402

_step_end = OpenGRPOTrainer._maybe_log_save_evaluate


def step_end(self, *args, **kwargs):
    if self.state.global_step == int(os.environ.get("TOUCH_STOP_AT_STEP", 0)) and os.environ["LOCAL_RANK"] == "0":
        open(os.environ["OPEN_GRPO_STOP_FILE"], "w").close()
    return _step_end(self, *args, **kwargs)


OpenGRPOTrainer._maybe_log_save_evaluate = step_end

from open_grpo.train import main  # noqa: E402

try:
    main(sys.argv[1])
finally:
    with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(log, f)
