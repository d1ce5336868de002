"""The layout a checkpoint was saved with, against the layout of this launch.

A checkpoint's optimizer shards (one per rank under ZeRO), RNG states (one per rank) and data position (prompts per
step) belong to the layout that saved it: world size, ZeRO stage, vLLM tensor parallelism, per-device batch and
gradient accumulation. Its COMPLETE marker records that layout (checkpoints.py); resuming on another one is refused
before any model is loaded (exit 2), naming both layouts and the ways out: `resume: weights` (a new run from the saved
16-bit model) or DeepSpeed's universal checkpoint (`ds_to_universal.py`), which loads on any layout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from open_grpo.errors import RecipeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """How a launch splits the work; a checkpoint's optimizer shards, RNG states and data position depend on it."""

    world_size: int
    zero_stage: int
    tp: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int

    def describe(self) -> str:
        return (
            f"world size {self.world_size}, ZeRO stage {self.zero_stage}, TP {self.tp}, per-device batch "
            f"{self.per_device_train_batch_size}, gradient accumulation {self.gradient_accumulation_steps}"
        )


def current_layout(training) -> Layout:
    """This launch's layout, from what the launcher set (WORLD_SIZE, accelerate's DeepSpeed stage) and the recipe."""
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")  # `accelerate launch` with a DeepSpeed config
    if not stage:  # a DeepSpeed config given to the Trainer itself (`deepspeed: ds.json`)
        ds = training.deepspeed
        if isinstance(ds, str) and Path(ds).is_file():
            ds = json.loads(Path(ds).read_text())
        stage = (ds.get("zero_optimization") or {}).get("stage", 0) if isinstance(ds, dict) else 0
    colocated = training.use_vllm and training.vllm_mode == "colocate"
    return Layout(
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        zero_stage=int(stage) if str(stage).isdigit() else 0,
        tp=training.vllm_tensor_parallel_size if colocated else 1,
        per_device_train_batch_size=training.per_device_train_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
    )


def is_universal(path: Path) -> bool:
    """A DeepSpeed universal checkpoint (`ds_to_universal.py`, its tag written to `latest`) loads on any layout."""
    latest = path / "latest"
    return latest.is_file() and latest.read_text().strip().endswith("_universal")


def check_layout(path: Path, marker: dict, layout: Layout) -> None:
    saved = marker.get("layout")
    if not saved:  # a marker from before layouts were recorded
        return
    saved = Layout(**{f.name: saved.get(f.name) for f in dataclasses.fields(Layout)})
    if saved == layout:
        return
    if is_universal(path):
        logger.info("%s is a DeepSpeed universal checkpoint: resuming it on %s", path, layout.describe())
        return
    tag = (path / "latest").read_text().strip() if (path / "latest").is_file() else "global_step<N>"
    raise RecipeError(
        [
            f"{path} was saved with {saved.describe()}; now {layout.describe()}. A checkpoint resumes only on the "
            "layout that saved it (its optimizer shards, RNG states and data position are per rank)",
            "ways out: launch with the saved layout; or `resume: weights`: a new run from this checkpoint's 16-bit "
            "model weights with a fresh optimizer and data position; or convert its DeepSpeed state to a universal "
            f"checkpoint with DeepSpeed's `ds_to_universal.py --input_folder {path / tag} --output_folder "
            f"{path / tag}_universal`, write `{tag}_universal` into {path / 'latest'}, set `checkpoint: "
            "{load_universal: true}` in the DeepSpeed config, and resume (DeepSpeed's Universal Checkpointing docs)",
        ],
        "resume",
    )
