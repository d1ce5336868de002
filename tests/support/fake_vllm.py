"""A test double of vLLM's offline engine: what TRL's colocated VLLMGeneration calls, recorded."""

import gc
import importlib
import os
import random
from types import SimpleNamespace

import torch

# The logprob the double reports for every sampled token (tests of the IS correction set it near the model's own).
SAMPLED_LOGPROB = -5.0
# Variables an engine built in its own process must not see (the double records them at construction)
WATCHED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
               "VLLM_ENABLE_V1_MULTIPROCESSING", "CUDA_VISIBLE_DEVICES")  # fmt: skip


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)
        self.kwargs = kwargs


class FakeLLM:
    instances: list["FakeLLM"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.loaded: list[str] = []
        self.weights: dict = {}  # name -> a copy of the last tensor pushed under that name
        self.load_calls = 0
        self.generate_calls: list[list[list[int]]] = []
        self.sampling_params: list[FakeSamplingParams] = []
        self.gc_enabled: list[bool] = []  # whether Python's garbage collector was on during each generate call
        self.calls: list[str] = []
        self.env = {name: os.environ.get(name) for name in WATCHED_ENV}
        model = SimpleNamespace(load_weights=self._load_weights)
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=model))),
            model_config=SimpleNamespace(
                max_model_len=kwargs.get("max_model_len") or 32768
            ),  # read by TRL's tool loop
        )
        if kwargs.get("dtype") in ("bfloat16", "float16"):
            self.llm_engine.model_config = SimpleNamespace(dtype=getattr(torch, kwargs["dtype"]))
        self.worker = None  # vLLM's worker with `worker_extension_cls` mixed in, as vLLM 0.26 builds it
        if kwargs.get("worker_extension_cls"):
            module, name = kwargs["worker_extension_cls"].rsplit(".", 1)
            extension = getattr(importlib.import_module(module), name)
            self.worker = type("FakeWorker", (extension,), {})()
            self.worker.device = torch.device("cpu")
            self.worker.model_runner = SimpleNamespace(model=model)
        FakeLLM.instances.append(self)

    def _load_weights(self, weights):
        self.load_calls += 1
        weights = list(weights)
        self.loaded.extend(name for name, _ in weights)
        # a copy: TRL merges a LoRA adapter into the weights in place and unmerges it right after the push
        self.weights.update((name, tensor.detach().clone()) for name, tensor in weights)

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.generate_calls.append([p["prompt_token_ids"] for p in prompts])
        self.sampling_params.append(sampling_params)
        self.gc_enabled.append(gc.isenabled())
        rng = random.Random(len(self.generate_calls))
        outputs = []
        for p in prompts:
            ids = [rng.randrange(300, 5000) for _ in range(sampling_params.max_tokens)]
            logprobs = None
            if sampling_params.logprobs is not None:
                logprobs = [{t: SimpleNamespace(logprob=SAMPLED_LOGPROB, rank=1)} for t in ids]
            outputs.append(
                SimpleNamespace(
                    prompt_token_ids=p["prompt_token_ids"], outputs=[SimpleNamespace(token_ids=ids, logprobs=logprobs)]
                )
            )
        return outputs

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def sleep(self, level=1):
        self.calls.append(f"sleep{level}")

    def wake_up(self, tags=None):
        self.calls.append(f"wake_up{tags}")

    def collective_rpc(self, method, args=()):
        self.calls.append(f"rpc:{method}")
        if self.worker is not None:
            return [getattr(self.worker, method)(*args)]


def install(monkeypatch):
    import trl.generation.vllm_generation as gen

    FakeLLM.instances.clear()
    monkeypatch.setattr(gen, "LLM", FakeLLM, raising=False)
    monkeypatch.setattr(gen, "SamplingParams", FakeSamplingParams, raising=False)
    monkeypatch.setattr(gen, "is_vllm_available", lambda: True)
    return FakeLLM


class FakeVLLMClient:
    """What TRL's server mode calls on `trl vllm-serve` (through `VLLMClient`), recorded."""

    instances: list["FakeVLLMClient"] = []

    def __init__(self, base_url=None, group_port=None, connection_timeout=None, **kwargs):
        self.base_url = base_url
        self.synced: list[list[str]] = []
        self.generate_calls: list[dict] = []
        FakeVLLMClient.instances.append(self)

    def init_communicator(self, device=0):
        pass

    def get_server_info(self):
        return {"model_config": {"logprobs_mode": "processed_logprobs"}}

    def update_named_params(self, metadata, named_params):
        self.synced.append([name for name, _ in named_params])

    def reset_prefix_cache(self):
        pass

    def generate(self, prompts, features=None, n=1, max_tokens=16, **kwargs):
        self.generate_calls.append({"prompts": prompts, "n": n})
        rng = random.Random(len(self.generate_calls))
        completions = [[rng.randrange(300, 5000) for _ in range(max_tokens)] for _ in prompts for _ in range(n)]
        return {
            "prompt_ids": list(prompts),
            "completion_ids": completions,
            "logprobs": [[[-5.0] for _ in ids] for ids in completions],
            "logprob_token_ids": [[[t] for t in ids] for ids in completions],
        }


def install_server(monkeypatch):
    import trl.generation.vllm_generation as gen

    FakeVLLMClient.instances.clear()
    monkeypatch.setattr(gen, "VLLMClient", FakeVLLMClient)
    monkeypatch.setattr(gen, "is_vllm_available", lambda: True)
    return FakeVLLMClient


def record_generations(keys=("tensor_parallel_size", "seed", "max_num_seqs", "compilation_config")) -> list[dict]:
    """For driver scripts run in their own processes: every vLLM call of TRL's colocated generation goes to the
    engine double, and each is recorded (what this rank passed, got back, and what its engine got and was built with).
    Returns the list the records are appended to."""
    import trl.generation.vllm_generation as gen

    gen.LLM, gen.SamplingParams, gen.is_vllm_available = FakeLLM, FakeSamplingParams, lambda: True
    log = []
    original = gen.VLLMGeneration.generate

    def generate(self, prompts, *args, **kwargs):
        out = original(self, prompts, *args, **kwargs)
        engine = FakeLLM.instances[-1]
        log.append({"local": prompts, "returned": [list(p) for p in out[0]], "engine_got": engine.generate_calls[-1],
                    "engine_kwargs": {k: engine.kwargs.get(k) for k in keys}})  # fmt: skip
        return out

    gen.VLLMGeneration.generate = generate
    return log
