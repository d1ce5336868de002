"""Dynamic sampling (DAPO, Yu et al. 2025, arXiv:2503.14476, section 3.2): train only on prompts whose completions
disagree.

A group whose `num_generations` completions all get the same reward has zero advantage: it adds nothing to the policy
gradient but still fills the batch. With `dynamic_sampling: true`, after TRL generates and scores a generation batch,
those zero-variance groups are dropped and the batch is refilled: each refill round draws fresh prompts at random from
the training set (seeded by the run's seed, the step and the round, so a resumed run draws the same ones), generates
and scores them like the first batch, and keeps the groups that disagree. After `dynamic_sampling_max_rounds` refill
rounds the batch is completed with dropped (zero-variance) groups, which train exactly as they would without dynamic
sampling (advantage 0). Logged per step: `dynamic_sampling/dropped_frac` (zero-variance groups / groups generated),
`dynamic_sampling/rounds` (refill rounds used), `dynamic_sampling/padded_frac` (share of the trained groups that are
zero-variance padding). A step where no group disagreed (it trains on padding only) says so on the console.

Every group must live on one rank (`per_device_train_batch_size * steps_per_generation` a multiple of
`num_generations`) and advantages must be normalised per group (`scale_rewards: group | none`, the default
`multi_objective_aggregation`; recipe/rules_training.py checks both): then a kept group's advantages do not depend on the rest of its batch, and groups from
different rounds can be trained together. TRL's own metrics (reward, lengths) average every generated completion,
dropped ones included.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from open_grpo.engine.gathered import latest_rows, totals

logger = logging.getLogger(__name__)

LEFT_PADDED = ("prompt_ids", "prompt_mask")
# key -> padding value when batches of different lengths are concatenated (TRL pads tool_mask with 1)
PADDING = {"prompt_mask": 0, "completion_mask": 0, "tool_mask": 1}
PER_ROW = ("advantages",)
RECOMPUTED = ("num_items_in_batch",)
# refill seeds: run seed + SEED_STRIDE * (step, round) index, distinct for every step and round of a run
SEED_STRIDE = 1_000_003
SEQUENCE_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "old_per_token_logps",
                 "sampling_per_token_logps", "ref_per_token_logps", "importance_sampling_ratio", "tool_mask")  # fmt: skip


def zero_variance(rewards: list[float | None], num_generations: int) -> list[bool]:
    """Per group of `num_generations` consecutive rewards: True when fewer than two completions could be scored or all
    scored ones got the same reward (their advantages are all 0)."""
    out = []
    for start in range(0, len(rewards), num_generations):
        scored = [r for r in rewards[start : start + num_generations] if r is not None]
        out.append(len(scored) < 2 or max(scored) == min(scored))
    return out


def refill_prompts(dataset, num_prompts: int, rank: int, world: int, seed: int) -> list[dict]:
    """`num_prompts` rows for this rank, drawn at random from the training set: every rank draws the same global
    sample from `seed` and keeps its own slice, so ranks train on different prompts."""
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randint(len(dataset), (num_prompts * world,), generator=generator)
    return [dataset[int(i)] for i in indices[rank * num_prompts : (rank + 1) * num_prompts]]


def concat_rows(batches: list[tuple[dict, torch.Tensor]], pad_token_id: int) -> dict:
    """Chosen rows of several scored batches (TRL's output dict, row indices), in order, as one batch: sequences
    re-padded to the longest (prompt side on the left, completion side on the right, as TRL pads them).
    `num_items_in_batch` is left to the caller."""
    from trl.trainer.utils import pad

    first = batches[0][0]
    out = {}
    for key in first:
        if key in RECOMPUTED:
            continue
        parts = [batch[key][rows] for batch, rows in batches]
        if key in PER_ROW:
            out[key] = torch.cat(parts)
        elif key in SEQUENCE_KEYS:
            side = "left" if key in LEFT_PADDED else "right"
            value = PADDING.get(key, pad_token_id if key.endswith("_ids") else 0)
            out[key] = pad([row for part in parts for row in part], padding_value=value, padding_side=side)
        else:
            raise NotImplementedError(
                f"dynamic_sampling cannot merge the generation output {key!r} (multimodal inputs): turn "
                "'dynamic_sampling' off for this model"
            )
    return out


class DynamicSampler:
    """One generation batch with refills: the trainer calls `fill` in place of TRL's single
    `_generate_and_score_completions` call, passing that call as `generate_and_score`."""

    def __init__(self, num_generations: int, max_rounds: int, seed: int):
        self.num_generations = num_generations
        self.max_rounds = max_rounds
        self.seed = seed

    def _score(self, trainer, generate_and_score: Callable, inputs: list[dict]) -> tuple[dict, list[bool]]:
        """TRL's output for `inputs` and, per group of this rank, whether its rewards have zero variance (judged on the
        rewards TRL gathered from every rank)."""
        output = generate_and_score(inputs)
        rows = latest_rows(trainer, len(inputs) * trainer.accelerator.num_processes)
        groups = zero_variance(totals(rows, trainer.reward_weights.tolist()), self.num_generations)
        per_rank = len(inputs) // self.num_generations
        rank = trainer.accelerator.process_index
        return output, groups[rank * per_rank : (rank + 1) * per_rank]

    def fill(self, trainer, inputs: list[dict], generate_and_score: Callable) -> tuple[dict, dict[str, float]]:
        """The batch to train on (as many groups per rank as `inputs` holds) and this step's metrics."""
        accelerator, g = trainer.accelerator, self.num_generations
        wanted = len(inputs) // g
        scored = [self._score(trainer, generate_and_score, inputs)]
        rounds = 0
        while rounds < self.max_rounds:
            kept = sum(not z for _, zeros in scored for z in zeros)
            seen = sum(len(zeros) for _, zeros in scored)
            counts = accelerator.gather(torch.tensor([[max(0, wanted - kept), kept, seen]], device=accelerator.device))
            missing = counts[:, 0].max().item()
            if missing == 0:
                break
            # Enough prompts to fill the emptiest rank at the keep rate seen so far, the same count on every rank
            # (the collectives inside generation must match).
            kept_all, seen_all = counts[:, 1].sum().item(), counts[:, 2].sum().item()
            num_prompts = min(wanted, math.ceil(missing * seen_all / kept_all) if kept_all else wanted)
            rounds += 1
            seed = self.seed + SEED_STRIDE * (trainer.state.global_step * (self.max_rounds + 1) + rounds)
            rank, world = accelerator.process_index, accelerator.num_processes
            rows = refill_prompts(trainer.train_dataset, num_prompts, rank, world, seed)
            scored.append(self._score(trainer, generate_and_score, [dict(row) for row in rows for _ in range(g)]))
        metrics = self._metrics(accelerator, scored, wanted, rounds)
        if metrics["dynamic_sampling/padded_frac"] == 1.0 and accelerator.is_main_process:
            logger.warning(
                "dynamic sampling, step %d: every group generated (%d refill round(s)) got one reward for all its "
                "completions, so this step trains on zero-advantage groups only and does not move the policy. If it "
                "lasts, the rewards cannot tell these completions apart: check them and the prompts' difficulty "
                "(dynamic_sampling_max_rounds sets the refills tried)", trainer.state.global_step + 1, rounds,
            )  # fmt: skip
        return self._assemble(trainer, scored, wanted), metrics

    def _assemble(self, trainer, scored: list[tuple[dict, list[bool]]], wanted: int) -> dict:
        """`wanted` groups: those that disagree first, in the order generated, then zero-variance ones if needed."""
        g, device = self.num_generations, trainer.accelerator.device
        varied = [(b, i) for b, (_, zeros) in enumerate(scored) for i, z in enumerate(zeros) if not z]
        flat = [(b, i) for b, (_, zeros) in enumerate(scored) for i, z in enumerate(zeros) if z]
        chosen = (varied + flat)[:wanted]
        batches = []
        for b, (output, _) in enumerate(scored):
            rows = [i * g + j for chosen_b, i in chosen if chosen_b == b for j in range(g)]
            if rows:
                batches.append((output, torch.tensor(rows, device=device)))
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        merged = concat_rows(batches, tokenizer.pad_token_id)
        loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = trainer.accelerator.gather(loss_mask.sum()).sum()  # as TRL: all ranks' tokens
        return merged

    @staticmethod
    def _metrics(accelerator, scored: list[tuple[dict, list[bool]]], wanted: int, rounds: int) -> dict[str, float]:
        flat = sum(z for _, zeros in scored for z in zeros)
        seen = sum(len(zeros) for _, zeros in scored)
        padded = max(0, wanted - (seen - flat))
        local = torch.tensor([[flat, seen, padded, wanted]], device=accelerator.device)
        flat, seen, padded, wanted = accelerator.gather(local).sum(dim=0).tolist()
        return {
            "dynamic_sampling/dropped_frac": flat / seen,
            "dynamic_sampling/rounds": float(rounds),
            "dynamic_sampling/padded_frac": padded / wanted,
        }
