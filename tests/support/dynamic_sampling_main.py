"""Run by tests/test_dynamic_sampling.py under `torch.distributed.run --nproc_per_node 2` (CPU): colocated training
against the vLLM engine double with dynamic sampling and the completions log, recording per rank the prompts it was
given and the groups it trained with zero advantage."""

import json
import os
import sys
from importlib.metadata import EntryPoint

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the checkout

import trl.generation.vllm_generation as gen  # noqa: E402

from open_grpo.rewards import registry  # noqa: E402
from open_grpo.train import main  # noqa: E402
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer  # noqa: E402
from tests.support import fake_vllm  # noqa: E402

gen.LLM, gen.SamplingParams, gen.is_vllm_available = fake_vllm.FakeLLM, fake_vllm.FakeSamplingParams, lambda: True
registry._discover()["flat_or_lowercase"] = [
    (
        "open-grpo-tests",
        EntryPoint("flat_or_lowercase", "tests.unit.trainer.test_dynamic_sampling:flat_or_lowercase", registry.GROUP),
    )
]
GENERATIONS = int(sys.argv[3])
log = []
_score = OpenGRPOTrainer._generate_and_score_completions


def score(self, inputs):
    output = _score(self, inputs)
    log.append(
        {
            "step": self.state.global_step + 1,
            "given": [x["prompt"][-1]["content"] for x in inputs[::GENERATIONS]],
            "size": len(output["advantages"]),
            "zero_groups": (output["advantages"].view(-1, GENERATIONS) == 0).all(dim=1).sum().item(),
            "padded_frac": self._metrics["train"]["dynamic_sampling/padded_frac"][-1],
        }
    )
    return output


OpenGRPOTrainer._generate_and_score_completions = score
main(sys.argv[1])
with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump(log, f)
