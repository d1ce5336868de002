"""Checkpoints that count: the `COMPLETE` marker, what it records, and rotation that never loses the last good one.

A checkpoint folder (`<output_dir>/checkpoint-<step>`, written by the Trainer) counts only once its `COMPLETE` marker
is in it. The marker is written last, after every rank has finished saving, atomically (absent or whole). It is JSON:

    {"format": 1, "step": 40, "time": 1700000000.0, "save_seconds": 12.3,
     "run_id": "20250101-120000-a1b2c3", "recipe_hash": "0123456789abcdef",
     "layout": {"world_size": 8, "zero_stage": 3, "tp": 1, "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 1},
     "files": {"model.safetensors": 3087467144, "global_step40/zero_pp_rank_0_mp_rank_00_optim_states.pt": ...}}

`files` holds the size of every file the checkpoint had when it was marked: a file truncated or lost since (a full
disk, a copy cut short) is found before resuming (`file_problems`), not as a traceback after the model has loaded.
Which run and layout the other keys name is resume.py's business. `save_marked` asks transformers' own
`Trainer._get_output_dir` where the checkpoint goes: the Trainer's method on the trainer being saved, called from
the `_save_checkpoint` override, not an internal of TRL or vLLM (those go through engine/).

With `save_total_limit`, older checkpoints are deleted only once the new one is complete (`rotate`), and only complete
ones count: a kill between saving and marking never leaves the run without a checkpoint to resume from.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

MARKER = "COMPLETE"
FORMAT = 1
_STEP = re.compile(r"^checkpoint-(\d+)$")
# DeepSpeed's pointer to the tag folder to load; users rewrite it after `ds_to_universal.py`, so its size may change
UNVERIFIED = {"latest"}
# A write in progress (`COMPLETE.tmp`, `tmpXXXX`, `x.tmp123`): left behind by a save killed mid-way, never part of
# a checkpoint. Deleted before saving into a folder again, and never listed in a marker.
_TEMP = re.compile(r"(^|\.)tmp")


def _cpu_rank_location(storage, location: str):
    return storage if location.startswith("cpu:") else None


# transformers loads the optimizer state of a multi-rank run with `map_location=args.device`, which is `cpu:<rank>`
# on CPU; torch.load knows only "cpu" and fails ("don't know how to restore ... tagged with cpu:0"). The storage is
# already on the CPU: accept it as it is.
torch.serialization.register_package(5, lambda storage: None, _cpu_rank_location)


def is_temporary(path: Path) -> bool:
    return any(_TEMP.search(part) for part in path.parts)


def file_sizes(folder: str | Path) -> dict[str, int]:
    root = Path(folder)
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER and not is_temporary(p.relative_to(root))
    }


def mark_complete(checkpoint: str | Path, step: int, stamp: dict | None = None, save_seconds: float | None = None):
    """Write the marker, last: the step, the run's `stamp` (run_id, recipe_hash, layout) and every file's size."""
    folder = Path(checkpoint)
    record = {"format": FORMAT, "step": step, "time": time.time(), "save_seconds": save_seconds, **(stamp or {})}
    record["files"] = file_sizes(folder)
    path = folder / MARKER
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)  # atomic: the marker is either absent or whole


def read_marker(checkpoint: str | Path) -> dict | None:
    """The marker's record; None when there is no marker. An older marker without the JSON fields gives {}."""
    path = Path(checkpoint) / MARKER
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def clear_marker(checkpoint: str | Path) -> None:
    """Before saving into a folder that exists (a run resumed from an earlier step), drop its stale marker and the
    temporary files of a save that was cut off there."""
    folder = Path(checkpoint)
    (folder / MARKER).unlink(missing_ok=True)
    for path in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
        if is_temporary(path.relative_to(folder)) and not path.is_dir():
            path.unlink(missing_ok=True)


def file_problems(checkpoint: str | Path, record: dict) -> list[str]:
    """Files recorded in the marker that are missing or changed size since ("optimizer.pt: 512 bytes, 4096 saved")."""
    folder = Path(checkpoint)
    problems = []
    for name, size in (record.get("files") or {}).items():
        if name in UNVERIFIED:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} is {path.stat().st_size} bytes, {size} when saved")
    return problems


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint folder, newest first."""
    root = Path(output_dir)
    found = [(int(m.group(1)), p) for p in root.glob("checkpoint-*") if p.is_dir() and (m := _STEP.match(p.name))]
    return sorted(found, reverse=True)


def newest_complete(output_dir: str | Path) -> Path | None:
    """The newest checkpoint with its marker; incomplete newer ones are reported and skipped."""
    for _step, path in checkpoints(output_dir):
        if (path / MARKER).is_file():
            return path
        logger.warning("skipping incomplete checkpoint %s (no %s marker: the save was interrupted)", path, MARKER)
    return None


def rotate(output_dir: str | Path, limit: int | None, keep: str | Path | None = None) -> list[Path]:
    """`save_total_limit`: keep the `limit` newest complete checkpoints (and `keep`, the best one), delete the older
    complete ones and every incomplete leftover. Called right after a checkpoint is marked, so the newest complete one
    is the one just saved and is never deleted. Returns what was deleted."""
    if not limit or limit <= 0:
        return []
    found = checkpoints(output_dir)
    complete = [path for _step, path in found if (path / MARKER).is_file()]
    if not complete:
        return []
    protected = {path.resolve() for path in complete[:limit]} | ({Path(keep).resolve()} if keep else set())
    doomed = [path for _step, path in found if path.resolve() not in protected]
    for path in doomed:
        logger.info("deleting %s (save_total_limit=%d)", path, limit)
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def save_marked(trainer, save, trial) -> float:
    """The Trainer's `_save_checkpoint` (`save`), then the marker once every rank has written, then rotation.
    Returns the seconds the whole save took, as every rank saw it."""
    args = trainer.args
    folder = Path(trainer._get_output_dir(trial=trial)) / f"checkpoint-{trainer.state.global_step}"
    start = time.perf_counter()
    if args.should_save:
        clear_marker(folder)
    limit, args.save_total_limit = args.save_total_limit, None  # the Trainer would rotate before the marker exists
    try:
        save()
    finally:
        args.save_total_limit = limit
    trainer.accelerator.wait_for_everyone()  # every rank's shards and RNG state are on disk
    seconds = time.perf_counter() - start
    if args.should_save:
        mark_complete(folder, trainer.state.global_step, trainer.run_stamp, round(seconds, 3))
        rotate(folder.parent, limit, keep=trainer.state.best_model_checkpoint)
    return seconds
