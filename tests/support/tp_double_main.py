"""Run by tests/test_trainer_colocate.py under `accelerate launch --cpu --num_processes 2`: colocated training
with TP=2 against the vLLM engine double, recording per rank what went in and what came back."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_vllm  # noqa: E402

log = fake_vllm.record_generations()

from open_grpo.train import main  # noqa: E402

main(sys.argv[1])
with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump(log, f)
