"""TRL 1.16's vLLM importance-sampling correction without its separate old-logprob forward pass.

TRL's `GRPOTrainer` runs, for every generation batch, a no-grad forward of the policy over all completions
(`old_per_token_logps`) only to compute the correction `exp(old - sampling)` against the logprobs vLLM sampled with,
whenever `vllm_importance_sampling_correction` is on. When every completion of a generation batch is trained on
within one optimizer step (`gradient_accumulation_steps % (steps_per_generation * num_iterations) == 0`, TRL's own
condition for dropping old logprobs), the weights that pass would see are the weights the loss pass sees, so
`old_per_token_logps == per_token_logps.detach()`: TRL itself substitutes exactly that when it skips the pass.

Folded, the scoring step skips the extra forward and the loss step computes the same correction from the loss
pass's own `per_token_logps.detach()` and the sampling logprobs, with TRL's formula (`is_ratio` mirrors
`GRPOTrainer._generate_and_score_completions`, TRL 1.16). Loss and gradients are TRL's within floating-point
tolerance (tests/test_folded_logprobs.py). The correction's metrics are logged per micro-batch instead of per
generation batch: identical with one micro-batch per generation (the recipes), averaged over micro-batches otherwise.
"""

from __future__ import annotations

import contextlib
import math

import torch
from trl.trainer.utils import nanmax, nanmin


def fold_applies(args) -> tuple[bool, str]:
    """(whether the old-logprob pass can be folded into the loss pass for this config, why not; "" where TRL runs no
    such pass at all, so there is nothing to say)."""
    if not (args.use_vllm and args.vllm_importance_sampling_correction):
        return False, ""
    generate_every = args.steps_per_generation * args.num_iterations
    if args.gradient_accumulation_steps % generate_every:
        return False, (
            f"gradient_accumulation_steps {args.gradient_accumulation_steps} is not a multiple of steps_per_generation "
            f"x num_iterations = {generate_every}: completions outlive an optimizer step, so old logprobs differ"
        )
    # use_liger_kernel folds too: TRL 1.16 applies only Liger's layer kernels (it forces fused_linear_cross_entropy
    # off, GRPOTrainer.__init__), and the loss is TRL's `_compute_loss` either way.
    return True, ""


def is_ratio(
    old_logps: torch.Tensor,
    sampling_logps: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    clip_min: float | None,
    clip_max: float | None,
) -> torch.Tensor:
    """TRL 1.16's vLLM importance-sampling ratio: (B, T) for token_* modes, (B, 1) for sequence_* modes."""
    diff = torch.nan_to_num((old_logps - sampling_logps) * mask, nan=0.0)  # NaN: vLLM could not score the token
    if mode in ("sequence_mask", "sequence_truncate"):
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if mode in ("sequence_truncate", "token_truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    if mode in ("sequence_mask", "token_mask"):
        low = clip_min if clip_min is not None else -math.inf
        high = clip_max if clip_max is not None else math.inf
        return ratio.masked_fill((ratio < low) | (ratio > high), value=0.0)
    raise ValueError(f"unknown vllm_importance_sampling_mode {mode!r}")


@contextlib.contextmanager
def scoring_without_old_logprobs(trainer):
    """While TRL scores a generation batch: no old-logprob pass, no ratio (the loss step computes it)."""
    trainer.vllm_importance_sampling_correction = False
    try:
        yield
    finally:
        trainer.vllm_importance_sampling_correction = True


def attach_ratio(trainer, inputs: dict, per_token_logps: torch.Tensor) -> None:
    """Put the correction TRL would have computed while scoring into `inputs`, from the loss pass's logprobs, and
    log TRL's `sampling/*` metrics for it."""
    args = trainer.args
    mask = inputs["completion_mask"]
    if "tool_mask" in inputs:
        mask = mask * inputs["tool_mask"]
    old = per_token_logps.detach()
    sampling = inputs["sampling_per_token_logps"]
    ratio = is_ratio(
        old,
        sampling,
        mask,
        args.vllm_importance_sampling_mode,
        args.vllm_importance_sampling_clip_min,
        args.vllm_importance_sampling_clip_max,
    )
    inputs["importance_sampling_ratio"] = ratio
    _log_metrics(trainer, old, sampling, mask, ratio)


def _log_metrics(trainer, old, sampling, mask, ratio) -> None:
    """TRL's `sampling/sampling_logp_difference/*` and `sampling/importance_sampling_ratio/*` (same definitions)."""
    gather = trainer.accelerator.gather
    metrics = trainer._metrics["train" if trainer.model.training else "eval"]
    zero = torch.tensor(0.0, device=old.device)
    with torch.no_grad():
        delta = torch.abs(old - sampling)
        keep = mask.bool()
        delta = delta[keep & ~torch.isnan(delta)]
        mean_delta = delta.mean() if delta.numel() else zero
        max_delta = delta.max() if delta.numel() else zero
        flat = ratio.flatten() if ratio.shape[1] == 1 else ratio[keep]
        low, mean, high = (flat.min(), flat.mean(), flat.max()) if flat.numel() else (zero, zero, zero)
        metrics["sampling/sampling_logp_difference/mean"].append(gather(mean_delta).mean().item())
        metrics["sampling/sampling_logp_difference/max"].append(gather(max_delta).max().item())
        metrics["sampling/importance_sampling_ratio/min"].append(nanmin(gather(low)).item())
        metrics["sampling/importance_sampling_ratio/mean"].append(gather(mean).nanmean().item())
        metrics["sampling/importance_sampling_ratio/max"].append(nanmax(gather(high)).item())
