"""A test double of vLLM's offline engine: what TRL's colocated VLLMGeneration calls, recorded."""

import random
from types import SimpleNamespace


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)
        self.kwargs = kwargs


class FakeLLM:
    instances: list["FakeLLM"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.loaded: list[str] = []
        self.load_calls = 0
        self.generate_calls: list[list[list[int]]] = []
        self.calls: list[str] = []
        model = SimpleNamespace(load_weights=self._load_weights)
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=model)))
        )
        FakeLLM.instances.append(self)

    def _load_weights(self, weights):
        self.load_calls += 1
        self.loaded.extend(name for name, _ in weights)

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.generate_calls.append([p["prompt_token_ids"] for p in prompts])
        rng = random.Random(len(self.generate_calls))
        outputs = []
        for p in prompts:
            ids = [rng.randrange(300, 5000) for _ in range(sampling_params.max_tokens)]
            logprobs = [{t: SimpleNamespace(logprob=-5.0, rank=1)} for t in ids]
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


def install(monkeypatch):
    import trl.generation.vllm_generation as gen

    FakeLLM.instances.clear()
    monkeypatch.setattr(gen, "LLM", FakeLLM, raising=False)
    monkeypatch.setattr(gen, "SamplingParams", FakeSamplingParams, raising=False)
    monkeypatch.setattr(gen, "is_vllm_available", lambda: True)
    return FakeLLM
