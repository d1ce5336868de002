"""Checkpoints that count, and which one to resume from.

A checkpoint folder (`<output_dir>/checkpoint-<step>`, written by the Trainer) counts as complete only once the marker
file `COMPLETE` is in it; the marker is written last, after every rank has finished saving. A half-written newest
checkpoint (the job was killed mid-save) is skipped with a warning, and the run resumes from the one before it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = "COMPLETE"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(checkpoint: str | Path, step: int) -> None:
    path = Path(checkpoint) / MARKER
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step, "time": time.time()}))
    tmp.replace(path)  # atomic: the marker is either absent or whole


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


def resume_from(output_dir: str | Path, resume: str) -> str | None:
    """`resume: auto` -> the newest complete checkpoint (or None to start fresh); `never` -> None; else a path."""
    if resume == "never":
        return None
    if resume == "auto":
        found = newest_complete(output_dir)
        if found is not None:
            logger.info("resuming from %s", found)
        return str(found) if found else None
    if not (Path(resume) / MARKER).is_file():
        raise FileNotFoundError(f"resume={resume!r} is not a complete checkpoint (no {MARKER} marker in it)")
    return resume
