"""Which run an output_dir holds, and where a launch continues it from (the `resume` recipe key).

An output_dir holds one run at a time, named in `<output_dir>/run.json`: a run id, the recipe hash, where the run
started and, once training ends, the step it finished at. Every checkpoint's `COMPLETE` marker records the run id,
recipe hash, step and layout that produced it (checkpoints.py). Everything here runs before a model is touched.

  resume: auto     continue this output_dir's run from its newest complete checkpoint whose files match its marker.
                   Another run's checkpoint is skipped, saying so; one saved with another layout is refused (exit 2);
                   a finished run is not trained again: one line says so and the launch exits 0. Raising max_steps
                   or changing the logging/saving cadence continues the same run (those keys are not in the hash);
                   a finished run that kept no checkpoint cannot continue: a larger max_steps starts a new run (the
                   old one moves aside, as with `never`). A checkpoint of another model is refused (exit 2).
  resume: never    start a new run: everything the previous run wrote (checkpoints, final model, metrics, completions,
                   plots, ...) moves to <output_dir>/previous/<its run id>/ (runs/previous.py; nothing is deleted),
                   so `auto` can never adopt it and nothing of it is overwritten.
  resume: weights  start a new run from the 16-bit model weights of the newest complete checkpoint (or, where a
                   finished run kept none, of its final model), with a fresh optimizer and data position (the
                   previous run moves aside as with `never`): the way to carry a run over to another layout.
  resume: <path>   continue from that checkpoint folder (same layout and model rules as `auto`).

A requeued SLURM job continues the run it started whatever `resume` says (slurm/train.sbatch adds `--resume auto`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from open_grpo.errors import RecipeError
from open_grpo.recipe.keys import RESUME_CHOICES
from open_grpo.runs.layout import Layout, check_layout, current_layout
from open_grpo.runs.model_identity import of_checkpoint, of_recipe, of_weights, renamed
from open_grpo.runs.model_identity import problem as model_problem
from open_grpo.runs.previous import PREVIOUS, destination, move_aside
from open_grpo.runs.recipe_hash import recipe_hash
from open_grpo.trainer.checkpoints import checkpoints, file_problems, read_marker

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"


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
    model: dict = field(default_factory=dict)  # the model this launch loads (runs/model_identity.py)

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
            "model": self.model,
        }


def plan(cfg) -> Plan:
    """Decide from the output_dir's files; raises RecipeError (exit 2) for a refused layout or damaged checkpoint."""
    fresh = {
        "run_id": time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3),
        "recipe_hash": recipe_hash(cfg),
    }
    logger.disabled = int(os.environ.get("RANK", "0")) != 0  # every rank plans; rank 0 says what it found
    try:
        result = _decide(cfg.script, cfg.training, current_layout(cfg.training), fresh, of_recipe(cfg.model))
    finally:
        logger.disabled = False
    result.recipe_hash = fresh["recipe_hash"]
    return result


def _decide(script, training, layout: Layout, fresh: dict, model: dict) -> Plan:
    out = Path(training.output_dir)
    record = read_run(out)
    start = (record or {}).get("start") or {}
    if start.get("weights"):  # a run started from weights trains that model, whatever model_name_or_path says
        model = of_weights(Path(start["weights"]), model)
    explicit = training.resume_from_checkpoint or (None if script.resume in RESUME_CHOICES else script.resume)
    if explicit:
        run = record or {**fresh, "start": {"checkpoint": explicit}}
        return _from_checkpoint(Path(explicit), run, training, layout, fresh, model)
    if script.resume == "never":
        return Plan(run=fresh, layout=layout, move_aside_to=destination(out, record), model=model)
    if script.resume == "weights":
        return _from_weights(out, record, fresh, layout, model)
    path, damaged = _newest_usable(out, record)
    if record and _finished(record, training):
        line = _finished_line(out, record["run_id"], record["finished"]["step"], continuable=path is not None)
        return Plan(run=record, layout=layout, finished=line)
    if path is not None:
        plan = _from_checkpoint(path, record, training, layout, fresh, model)
        plan.model_path = plan.model_path or start.get("weights")
        return plan
    if damaged:
        raise RecipeError(
            [f"{p}: {', '.join(problems)}" for p, problems in damaged]
            + ["no complete checkpoint with intact files is left: delete the damaged ones to start over (or "
               "resume: never, which keeps them aside), or resume from a good copy with resume: <path>"],
            out,
        )  # fmt: skip
    if start.get("weights"):  # a run started from weights that has no checkpoint of its own yet: start there again
        return Plan(run=record, layout=layout, model_path=start["weights"], model=model)
    if start.get("checkpoint"):
        return _from_checkpoint(Path(start["checkpoint"]), record, training, layout, fresh, model)
    if record and record.get("finished"):  # max_steps raised, but nothing was kept to continue from
        dest = destination(out, record)
        logger.warning("%s: run %s finished at step %d without a checkpoint to continue from: starting a new run "
                       "from %s; the finished run (its final model included) moves to %s. To train its final model "
                       "further instead: --resume weights", out, record["run_id"], record["finished"]["step"],
                       model["name"], dest)  # fmt: skip
        return Plan(run=fresh, layout=layout, move_aside_to=dest, model=model)
    return Plan(run=record or fresh, layout=layout, model=model)


def _finished(record: dict, training) -> bool:
    done = record.get("finished")
    if not done:
        return False
    if training.max_steps > 0:
        return done["step"] >= training.max_steps
    return done.get("max_steps", 0) <= 0 and training.num_train_epochs <= done.get("num_train_epochs", 0)


def _finished_line(out: Path, run_id, step: int, continuable: bool = True) -> str:
    head = f"{out} holds run {run_id}, already finished at step {step}: nothing to train."
    over = f"to start over, --resume never (the old run moves to {out / PREVIOUS}/)."
    if continuable:
        return f"{head} To train further, raise max_steps (e.g. --max_steps {2 * step}); {over}"
    return (f"{head} It kept no checkpoint to continue from, so a larger max_steps would start a new run from the "
            f"recipe's model (the old run moves to {out / PREVIOUS}/). To train its final model further: --resume "
            f"weights --max_steps N (a new run from it, with a fresh optimizer); {over}")  # fmt: skip


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


def _from_checkpoint(path: Path, record: dict | None, training, layout: Layout, fresh: dict, model: dict) -> Plan:
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
    saved = of_checkpoint(path, marker)
    if model_problem(path, saved, model):
        raise RecipeError(model_problem(path, saved, model), "resume")
    if renamed(saved, model):
        logger.info(renamed(saved, model))
    if marker.get("run_id") and marker["run_id"] != run["run_id"]:
        logger.warning("resuming from %s, saved by run %s, as run %s", path, marker["run_id"], run["run_id"])
    if marker.get("recipe_hash") and marker["recipe_hash"] != fresh["recipe_hash"]:
        logger.warning("the recipe changed since %s was saved (recipe hash %s, now %s): continuing with the new one",
                       path, marker["recipe_hash"], fresh["recipe_hash"])  # fmt: skip
    logger.info("resuming from %s", path)
    return Plan(run=run, layout=layout, checkpoint=str(path), model=model)


def _from_weights(out: Path, record: dict | None, fresh: dict, layout: Layout, model: dict) -> Plan:
    path, damaged = _newest_usable(out, record)
    source = path or (out if (record or {}).get("finished") else None)  # a finished run without one: its final model
    if source is None:
        found = "".join(f"; {p}: {', '.join(problems)}" for p, problems in damaged)
        raise RecipeError(f"resume: weights needs a complete checkpoint in {out}, found none{found}. To start from "
                          "any model folder instead, set model_name_or_path to it", out)  # fmt: skip
    saved = of_checkpoint(source, read_marker(source) or {})
    if (source / "adapter_config.json").is_file():
        raise RecipeError(
            f"resume: weights starts a new run from a full model's weights, and {source} holds a LoRA adapter "
            f"(adapter_model.safetensors, trained on {saved['name'] or 'its base model'}), not a full model. To carry "
            "the adapter to another layout, merge it into its base and start from that: PeftModel.from_pretrained("
            f"base_model, '{source}').merge_and_unload().save_pretrained(DIR) (and the tokenizer), then "
            "model_name_or_path: DIR with resume: never (a new adapter trains on the merged model). To continue this "
            "run as it is: resume: auto, on the layout that saved it", source)  # fmt: skip
    if not (source / "config.json").is_file() or not any(source.glob("*.safetensors")):
        if source == out:
            raise RecipeError(f"resume: weights: run {record['run_id']} finished without a checkpoint and without "
                              f"a final model in {out} (save_final_model: false): there are no weights to start "
                              "from; set model_name_or_path to a model folder instead", out)  # fmt: skip
        raise RecipeError(f"resume: weights: {path} holds no full 16-bit model (config.json + *.safetensors). Under "
                          "ZeRO-3 the model is gathered at save time only with `zero3_save_16bit_model: true` (as in "
                          "accelerate_configs/zero3.yaml); DeepSpeed's zero_to_fp32.py in the checkpoint folder "
                          "rebuilds it", path)  # fmt: skip
    previous = destination(out, record)
    weights = previous / path.name if path else previous
    logger.info("resume: weights: a new run from the model weights of %s (moving to %s)", source, weights)
    return Plan(run={**fresh, "start": {"weights": str(weights)}}, layout=layout, model_path=str(weights),
                move_aside_to=previous, model=of_weights(weights, model, saved))  # fmt: skip


def start(plan: Plan, output_dir, state) -> None:
    """Rank 0 moves the previous run aside and writes run.json; every rank has planned before and waits after."""
    out = Path(output_dir)
    state.wait_for_everyone()  # every rank decided from the same files
    if state.is_main_process:
        if plan.move_aside_to is not None:
            move_aside(out, plan.move_aside_to)
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
    from open_grpo.trainer.preemption import PREEMPTED_MARKER  # a stop earlier in this run: done with now

    (Path(output_dir) / PREEMPTED_MARKER).unlink(missing_ok=True)
