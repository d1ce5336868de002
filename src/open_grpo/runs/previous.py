"""The previous run of an output_dir, moved aside whole to `<output_dir>/previous/<its run id>/`.

`resume: never`, `resume: weights` and a finished run started again without a checkpoint to continue from start a new
run in the same output_dir. Before it writes anything, every entry the folder holds moves aside, whatever wrote it
(run.json, metrics.jsonl, completions.jsonl, TRL's completions/*.parquet, vllm_engine.json, the final model or
adapter, checkpoints, plots, PREEMPTED, ...): only `previous/` itself, the lock and the job's stop file stay. Nothing
is deleted, and nothing of the old run is left for the new one to overwrite or append to. If a move fails, what
moved goes back and the launch stops (exit 2): all or nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from open_grpo.errors import RecipeError
from open_grpo.runs.lock import LOCK
from open_grpo.trainer.checkpoints import checkpoints, read_marker

logger = logging.getLogger(__name__)

PREVIOUS = "previous"
RUN_SIGNS = ("run.json", "metrics.jsonl", "reward_curve.png")  # with a checkpoint folder: a run was here


def _stays(entry: Path) -> bool:
    stop_file = os.environ.get("OPEN_GRPO_STOP_FILE")
    return (
        entry.name in (PREVIOUS, LOCK)
        or entry.name.startswith(f".{LOCK}.")
        or bool(stop_file and Path(stop_file).resolve() == entry.resolve())
    )


def entries(out: Path) -> list[Path]:
    """What moves aside: every entry of `out` but `previous/`, the lock and the stop file."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if not _stays(p))


def destination(out: Path, record: dict | None) -> Path | None:
    """Where the previous run moves (a folder that does not exist yet); None when no run was here. The same answer
    on every rank."""
    found = checkpoints(out)
    if not found and not any((out / name).exists() for name in RUN_SIGNS):
        return None
    newest_owner = (read_marker(found[0][1]) or {}).get("run_id") if found else None
    name = (record or {}).get("run_id") or newest_owner or "unnamed"
    dest, n = out / PREVIOUS / name, 1
    while dest.exists():
        n += 1
        dest = out / PREVIOUS / f"{name}-{n}"
    return dest


def move_aside(out: Path, dest: Path) -> list[str]:
    """Move every entry of `out` (see `entries`) into `dest`; returns their names. All or nothing."""
    dest.mkdir(parents=True)
    moved: list[Path] = []
    try:
        for entry in entries(out):
            entry.rename(dest / entry.name)
            moved.append(entry)
    except OSError as e:
        for entry in reversed(moved):
            (dest / entry.name).rename(entry)
        dest.rmdir()
        raise RecipeError(f"cannot move the previous run aside to {dest}: {e}; nothing was moved. Free the file, "
                          "or give this launch another output_dir", out) from e  # fmt: skip
    names = [p.name for p in moved]
    logger.info("moved the previous run to %s: %s", dest, ", ".join(names))
    return names
