"""Per-step telemetry of a GRPO run: wall time per phase, completion tokens/s and completions/s per GPU, an MFU
estimate and peak GPU memory. `OpenGRPOTrainer` feeds it; the numbers are logged with each step (console, W&B,
metrics.jsonl) and read by `open-grpo bench`."""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict

import torch

# bf16 dense peak of the cards we know, for the MFU estimate (vendor datasheets, no sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "B200": 2250.0, "L40S": 362.0}
# FLOPs per parameter and token: forward + backward (6 N T) for trained tokens, forward only (2 N) per generated one
TRAIN_FLOPS_PER_PARAM_TOKEN = 6
DECODE_FLOPS_PER_PARAM_TOKEN = 2
PHASES = ("generation", "weight_sync", "rewards", "logprobs", "scoring_other", "train")


def card_name() -> str | None:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def peak_tflops(card: str | None) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if card and key in card:
            return tflops
    return None


class PhaseTimer:
    """Wall-clock seconds per named phase, summed between two `pop()` calls."""

    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed

    def pop(self) -> dict[str, float]:
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out


class StepTelemetry:
    """Counts one optimizer step: `start()` at its first micro-step, `count()` per generated batch, `pop()` at its
    end returns the step's metrics and resets."""

    def __init__(self, num_params: int):
        self.num_params = num_params
        self.card = card_name()
        self.phases = PhaseTimer()
        self._start = None
        self.completion_tokens = self.completions = self.train_tokens = 0

    def start(self) -> None:
        if self._start is None:
            self._start = time.perf_counter()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

    def count(self, completion_tokens: int, completions: int, prompt_tokens: int) -> None:
        self.completion_tokens += completion_tokens
        self.completions += completions
        self.train_tokens += completion_tokens + prompt_tokens

    @contextlib.contextmanager
    def paused(self):
        """Leave out what runs inside (an evaluation between two steps): its phase times and counts are dropped."""
        seconds = dict(self.phases.seconds)
        counts = self.completion_tokens, self.completions, self.train_tokens
        try:
            yield
        finally:
            self.phases.seconds = defaultdict(float, seconds)
            self.completion_tokens, self.completions, self.train_tokens = counts

    def pop(self) -> dict[str, float]:
        """The metrics of the optimizer step that just ended ({} when no step ran since the last call)."""
        if self._start is None:
            return {}
        step_s = time.perf_counter() - self._start
        self._start = None
        phases = self.phases.pop()
        scoring = phases.pop("generate_and_score", 0.0)
        generation = phases.get("generation", 0.0)
        sync = phases.get("weight_sync", 0.0)
        rewards = phases.get("rewards", 0.0)
        logprobs = phases.get("logprobs", 0.0)
        metrics = {
            "time/step": step_s,
            "time/generation": generation,
            "time/weight_sync": sync,
            "time/rewards": rewards,
            "time/logprobs": logprobs,
            "time/scoring_other": max(0.0, scoring - generation - sync - rewards - logprobs),
            "time/train": max(0.0, step_s - scoring),
            "throughput/completion_tokens_per_s_per_gpu": self.completion_tokens / step_s,
            "throughput/completions_per_s_per_gpu": self.completions / step_s,
        }
        peak = peak_tflops(self.card)
        if peak:  # a stated estimate: dense matmul FLOPs only, attention ignored
            flops = self.num_params * (
                TRAIN_FLOPS_PER_PARAM_TOKEN * self.train_tokens + DECODE_FLOPS_PER_PARAM_TOKEN * self.completion_tokens
            )
            metrics["throughput/mfu"] = flops / step_s / (peak * 1e12)
        if torch.cuda.is_available():
            metrics["memory/peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            metrics["memory/peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            free, total = torch.cuda.mem_get_info()
            metrics["memory/device_used_gib"] = (total - free) / 2**30
        self.completion_tokens = self.completions = self.train_tokens = 0
        return metrics
