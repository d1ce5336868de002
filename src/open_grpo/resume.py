"""Which run an output_dir holds, and where a launch continues it from (the `resume` recipe key).

An output_dir holds one run at a time, named in `<output_dir>/run.json`: a run id, the recipe hash, where the run
started and, once training ends, the step it finished at. Every checkpoint's `COMPLETE` marker records the run id,
recipe hash, step and layout that produced it (checkpoints.py). Everything here runs before a model is touched.

  resume: auto     continue this output_dir's run from its newest complete checkpoint whose files match its marker.
                   Another run's checkpoint is skipped, saying so; one saved with another layout is refused (exit 2);
                   a finished run is not trained again: one line says so and the launch exits 0. Raising max_steps
                   or changing the logging/saving cadence continues the same run (those keys are not in the hash).
  resume: never    start a new run: the previous run's checkpoints, metrics.jsonl, reward curve and run.json move to
                   <output_dir>/previous/<its run id>/ (nothing is deleted), so `auto` can never adopt them.
  resume: weights  start a new run from the 16-bit model weights of the newest complete checkpoint, with a fresh
                   optimizer and data position (the previous run moves aside as with `never`): the way to carry a
                   run over to another layout.
  resume: <path>   continue from that checkpoint folder (same layout rule as `auto`).

A requeued SLURM job continues the run it started whatever `resume` says (slurm/train.sbatch adds `--resume auto`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import checkpoints, file_problems, read_marker
from .errors import RecipeError
from .layout import Layout, check_layout, current_layout
from .recipe_keys import RESUME_CHOICES

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
PREVIOUS = "previous"
RUN_OUTPUTS = ("metrics.jsonl", "reward_curve.png", RUN_FILE)  # moved aside with the checkpoints by never/weights
# Keys that may change while the same run continues (its length, cadence, where it reports), and the layout keys,
# which have their own check and message. Every other key the recipe sets is in the recipe hash.
NOT_HASHED = frozenset(
    {"max_steps", "num_train_epochs", "logging_steps", "logging_strategy", "logging_first_step", "logging_dir",
     "save_steps", "save_strategy", "save_total_limit", "save_only_model", "save_final_model", "report_to",
     "run_name", "log_completions", "num_completions_to_print", "disable_tqdm", "log_level", "eval_steps",
     "eval_strategy", "output_dir", "resume", "resume_from_checkpoint", "push_to_hub", "hub_model_id",
     "per_device_train_batch_size", "gradient_accumulation_steps", "vllm_tensor_parallel_size"}
)  # fmt: skip


def recipe_hash(cfg) -> str:
    """A hash of the values of every key the recipe file and the overrides set, less `NOT_HASHED`."""
    keys = set(cfg.given)
    values = {}
    for key in sorted(keys - NOT_HASHED):
        owner = next((obj for obj in (cfg.script, cfg.training, cfg.model) if hasattr(obj, key)), None)
        if owner is not None:
            values[key] = getattr(owner, key)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_run(output_dir) -> dict | None:
    path = Path(output_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_run(output_dir, record: dict) -> None:
    path = Path(output_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


@dataclass
class Plan:
    """What this launch does with its output_dir (the same on every rank: decided from the same files)."""

    run: dict  # the run record it trains under (run.json)
    layout: Layout
    checkpoint: str | None = None  # continue from it: model, optimizer, scheduler, RNG, data position
    model_path: str | None = None  # start from these weights instead of model_name_or_path (resume: weights)
    finished: str | None = None  # the run is done: log this line and exit 0
    move_aside_to: Path | None = None  # the previous run moves here before this one starts
    recipe_hash: str = ""  # of this launch's recipe

    @property
    def step(self) -> int:
        """The step training starts from."""
        return int(Path(self.checkpoint).name.rsplit("-", 1)[-1]) if self.checkpoint else 0

    @property
    def stamp(self) -> dict:
        """What each COMPLETE marker of this launch records about its producer."""
        return {
            "run_id": self.run["run_id"],
            "recipe_hash": self.recipe_hash,
            "layout": dataclasses.asdict(self.layout),
        }


def plan(cfg) -> Plan:
    """Decide from the output_dir's files; raises RecipeError (exit 2) for a refused layout or damaged checkpoint."""
    fresh = {
        "run_id": time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3),
        "recipe_hash": recipe_hash(cfg),
    }
    result = _decide(cfg.script, cfg.training, current_layout(cfg.training), fresh)
    result.recipe_hash = fresh["recipe_hash"]
    return result


def _decide(script, training, layout: Layout, fresh: dict) -> Plan:
    out = Path(training.output_dir)
    record = read_run(out)
    explicit = training.resume_from_checkpoint or (None if script.resume in RESUME_CHOICES else script.resume)
    if explicit:
        run = record or {**fresh, "start": {"checkpoint": explicit}}
        return _from_checkpoint(Path(explicit), run, training, layout, fresh)
    if script.resume == "never":
        return Plan(run=fresh, layout=layout, move_aside_to=_previous_dir(out, record))
    if script.resume == "weights":
        return _from_weights(out, record, fresh, layout)
    if record and _finished(record, training):
        return Plan(
            run=record, layout=layout, finished=_finished_line(out, record["run_id"], record["finished"]["step"])
        )
    path, damaged = _newest_usable(out, record)
    if path is not None:
        return _from_checkpoint(path, record, training, layout, fresh)
    if damaged:
        raise RecipeError(
            [f"{p}: {', '.join(problems)}" for p, problems in damaged]
            + ["no complete checkpoint with intact files is left: delete the damaged ones to start over (or "
               "resume: never, which keeps them aside), or resume from a good copy with resume: <path>"],
            out,
        )  # fmt: skip
    start = (record or {}).get("start") or {}
    if start.get("weights"):  # a run started from weights that has no checkpoint of its own yet: start there again
        return Plan(run=record, layout=layout, model_path=start["weights"])
    if start.get("checkpoint"):
        return _from_checkpoint(Path(start["checkpoint"]), record, training, layout, fresh)
    if record and record.get("finished"):  # max_steps raised, but nothing was kept to continue from
        logger.warning(
            "%s: run %s finished without a checkpoint to continue from: starting a new run", out, record["run_id"]
        )
        return Plan(run=fresh, layout=layout, move_aside_to=_previous_dir(out, record))
    return Plan(run=record or fresh, layout=layout)


def _finished(record: dict, training) -> bool:
    done = record.get("finished")
    if not done:
        return False
    if training.max_steps > 0:
        return done["step"] >= training.max_steps
    return done.get("max_steps", 0) <= 0 and training.num_train_epochs <= done.get("num_train_epochs", 0)


def _finished_line(out: Path, run_id, step: int) -> str:
    return (
        f"{out} holds run {run_id}, already finished at step {step}: nothing to train. To train further, raise "
        f"max_steps (e.g. --max_steps {2 * step}); to start over, --resume never (the old run moves to {out / PREVIOUS}/)."
    )


def _newest_usable(out: Path, record: dict | None) -> tuple[Path | None, list]:
    """The newest complete checkpoint of this run whose files match its marker, and the damaged ones skipped."""
    run_id, damaged = (record or {}).get("run_id"), []
    for _step, path in checkpoints(out):
        marker = read_marker(path)
        if marker is None:
            logger.warning("skipping incomplete checkpoint %s (no COMPLETE marker: the save was interrupted)", path)
            continue
        owner = marker.get("run_id")
        if run_id and owner and owner != run_id:
            logger.warning("not resuming from %s: it was saved by run %s, and %s holds run %s (give it as "
                           "resume: <path> to continue it)", path, owner, out, run_id)  # fmt: skip
            continue
        problems = file_problems(path, marker)
        if problems:
            logger.warning("skipping damaged checkpoint %s: %s (delete it)", path, ", ".join(problems))
            damaged.append((path, problems))
            continue
        return path, damaged
    return None, damaged


def _from_checkpoint(path: Path, record: dict | None, training, layout: Layout, fresh: dict) -> Plan:
    marker = read_marker(path)
    if marker is None:
        raise RecipeError(f"resume: {path} is not a complete checkpoint (no COMPLETE marker: its save was cut off); "
                          "resume from an earlier one, or resume: auto to take the newest complete one", path)  # fmt: skip
    problems = file_problems(path, marker)
    if problems:
        raise RecipeError([f"{path}: {p}" for p in problems] + ["this checkpoint is damaged: delete it and resume "
                          "from an earlier one (resume: auto takes the newest whose files match)"], path)  # fmt: skip
    run = record or {"run_id": marker.get("run_id") or fresh["run_id"],
                     "recipe_hash": marker.get("recipe_hash") or fresh["recipe_hash"]}  # fmt: skip
    step = marker.get("step", int(path.name.rsplit("-", 1)[-1]))
    if training.max_steps > 0 and step >= training.max_steps:
        return Plan(run=run, layout=layout, finished=_finished_line(Path(training.output_dir), run["run_id"], step))
    check_layout(path, marker, layout)
    if marker.get("run_id") and marker["run_id"] != run["run_id"]:
        logger.warning("resuming from %s, saved by run %s, as run %s", path, marker["run_id"], run["run_id"])
    if marker.get("recipe_hash") and marker["recipe_hash"] != fresh["recipe_hash"]:
        logger.warning("the recipe changed since %s was saved (recipe hash %s, now %s): continuing with the new one",
                       path, marker["recipe_hash"], fresh["recipe_hash"])  # fmt: skip
    logger.info("resuming from %s", path)
    return Plan(run=run, layout=layout, checkpoint=str(path))


def _from_weights(out: Path, record: dict | None, fresh: dict, layout: Layout) -> Plan:
    path, damaged = _newest_usable(out, record)
    if path is None:
        found = "".join(f"; {p}: {', '.join(problems)}" for p, problems in damaged)
        raise RecipeError(f"resume: weights needs a complete checkpoint in {out}, found none{found}. To start from "
                          "any model folder instead, set model_name_or_path to it", out)  # fmt: skip
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise RecipeError(f"resume: weights: {path} holds no full 16-bit model (config.json + *.safetensors). Under "
                          "ZeRO-3 the model is gathered at save time only with `zero3_save_16bit_model: true` (as in "
                          "accelerate_configs/zero3.yaml); DeepSpeed's zero_to_fp32.py in the checkpoint folder "
                          "rebuilds it", path)  # fmt: skip
    previous = _previous_dir(out, record)
    weights = previous / path.name
    logger.info("resume: weights: a new run from the model weights of %s (moving to %s)", path, weights)
    return Plan(run={**fresh, "start": {"weights": str(weights)}}, layout=layout, model_path=str(weights),
                move_aside_to=previous)  # fmt: skip


def _previous_dir(out: Path, record: dict | None) -> Path | None:
    """Where the previous run moves; None when there is nothing to move. The same answer on every rank."""
    found = checkpoints(out)
    if not found and not any((out / name).exists() for name in RUN_OUTPUTS):
        return None
    newest_owner = (read_marker(found[0][1]) or {}).get("run_id") if found else None
    name = (record or {}).get("run_id") or newest_owner or "unnamed"
    dest, n = out / PREVIOUS / name, 1
    while dest.exists():
        n += 1
        dest = out / PREVIOUS / f"{name}-{n}"
    return dest


def start(plan: Plan, output_dir, state) -> None:
    """Rank 0 moves the previous run aside and writes run.json; every rank has planned before and waits after."""
    out = Path(output_dir)
    state.wait_for_everyone()  # every rank decided from the same files
    if state.is_main_process:
        if plan.move_aside_to is not None:
            plan.move_aside_to.mkdir(parents=True)
            moved = [p for _s, p in checkpoints(out)] + [out / n for n in RUN_OUTPUTS if (out / n).exists()]
            for path in moved:
                path.rename(plan.move_aside_to / path.name)
            logger.info("moved the previous run to %s: %s", plan.move_aside_to, ", ".join(p.name for p in moved))
        if read_run(out) != plan.run:
            write_run(out, plan.run)
    state.wait_for_everyone()
    plan.run = read_run(out) or plan.run  # rank 0's run id, on every rank


def finish(output_dir, trainer_state, training) -> None:
    """Record in run.json that the run finished: a later launch of it says so instead of training again."""
    record = read_run(output_dir)
    if record is not None:
        record["finished"] = {"step": trainer_state.global_step, "max_steps": training.max_steps,
                              "num_train_epochs": training.num_train_epochs}  # fmt: skip
        write_run(output_dir, record)
