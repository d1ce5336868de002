"""Run by tests/test_trainer_colocate.py under `accelerate launch --cpu --num_processes 2`: colocated training
with TP=2 against the vLLM engine double, recording per rank what went in and what came back."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_vllm  # noqa: E402
import trl.generation.vllm_generation as gen  # noqa: E402

gen.LLM, gen.SamplingParams, gen.is_vllm_available = fake_vllm.FakeLLM, fake_vllm.FakeSamplingParams, lambda: True
log = []
_generate = gen.VLLMGeneration.generate


def generate(self, prompts, *args, **kwargs):
    out = _generate(self, prompts, *args, **kwargs)
    engine = fake_vllm.FakeLLM.instances[-1]
    log.append({"local": prompts, "returned": [list(p) for p in out[0]], "engine_got": engine.generate_calls[-1],
                "engine_kwargs": {k: engine.kwargs.get(k) for k in ("tensor_parallel_size", "seed", "max_num_seqs",
                                                                  "compilation_config")}})  # fmt: skip
    return out


gen.VLLMGeneration.generate = generate

from open_grpo.train import main  # noqa: E402

main(sys.argv[1])
with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump(log, f)
