"""What a new launch does with an output_dir that holds a run, without training (fast): everything the previous run
wrote moves aside (or nothing does), a finished run without a checkpoint gets the right advice and keeps its final
model, a checkpoint of another model is refused before any model loads."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from open_grpo.errors import RecipeError
from open_grpo.planning.model_shapes import SHAPES
from open_grpo.recipe import load_recipe
from open_grpo.runs import lock, model_identity, resume
from open_grpo.trainer.checkpoints import mark_complete
from open_grpo.trainer.preemption import PREEMPTED_MARKER
from tests.unit.trainer.test_checkpoints import LAYOUT, _checkpoint

STATE = SimpleNamespace(wait_for_everyone=lambda: None, is_main_process=True, num_processes=1, device="cpu")
# what runs of this version and of TRL write into an output_dir, and one file no list knows about
WRITTEN = ["metrics.jsonl", "reward_curve.png", "completions.jsonl", "completions/completions_00002.parquet",
           "vllm_engine.json", "config.json", "model.safetensors", "tokenizer.json", "training_args.bin",
           "PREEMPTED", "eval_results.json", "wandb-run.txt"]  # fmt: skip


def _cfg(write_recipe, overrides=(), **changes):
    return load_recipe(write_recipe(changes), list(overrides))


def _written(out: Path) -> None:
    for name in WRITTEN:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"old {name}")


def _shape(name: str) -> dict:
    return model_identity.of_recipe(SimpleNamespace(model_name_or_path=name, model_revision=None, use_peft=False))[
        "shape"
    ]


@pytest.mark.parametrize("how", ["never", "weights"])
def test_a_new_run_moves_everything_the_previous_one_wrote(write_recipe, tmp_path, how):
    out = tmp_path / "out"
    _checkpoint(out, 2, run_id="old")
    resume.write_run(out, {"run_id": "old", "recipe_hash": "h"})
    _written(out)
    (out / "previous" / "older").mkdir(parents=True)
    (out / "previous" / "older" / "metrics.jsonl").write_text("older")
    lock.acquire(out, STATE)  # this launch's lock stays where it is
    plan = resume.plan(_cfg(write_recipe, resume=how))
    resume.start(plan, out, STATE)
    lock.release(out)
    kept = out / "previous" / "old"
    assert sorted(p.name for p in out.iterdir()) == ["previous", "run.json"]  # the new run's record, nothing else
    for name in [*WRITTEN, "checkpoint-2/model.safetensors", "run.json"]:
        assert (kept / name).is_file(), name
    assert (kept / "model.safetensors").read_text() == "old model.safetensors"
    assert (out / "previous" / "older" / "metrics.jsonl").read_text() == "older"
    assert resume.read_run(out)["run_id"] == plan.run["run_id"] != "old"
    if how == "weights":
        assert plan.model_path == str(kept / "checkpoint-2")


def test_a_move_that_fails_moves_nothing(write_recipe, tmp_path, monkeypatch):
    out = tmp_path / "out"
    resume.write_run(out, {"run_id": "old", "recipe_hash": "h"})
    _written(out)
    plan = resume.plan(_cfg(write_recipe, resume="never"))
    rename = Path.rename

    def rename_but_not_the_model(self, target):
        if self.name == "model.safetensors" and "previous" in str(target):
            raise PermissionError(13, "Permission denied", str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_but_not_the_model)
    with pytest.raises(RecipeError, match="cannot move the previous run aside.*nothing was moved"):
        resume.start(plan, out, STATE)
    assert all((out / name).read_text() == f"old {name}" for name in WRITTEN)
    assert resume.read_run(out)["run_id"] == "old" and not (out / "previous" / "old").exists()


@pytest.fixture
def finished_without_checkpoint(tmp_path):
    out = tmp_path / "out"
    _written(out)
    (out / "config.json").write_text("{}")
    resume.write_run(out, {"run_id": "run-a", "recipe_hash": "h", "finished": {"step": 4, "max_steps": 4}})
    return out


def test_a_finished_run_without_a_checkpoint_gets_the_right_advice(write_recipe, finished_without_checkpoint):
    line = resume.plan(_cfg(write_recipe, max_steps=4)).finished
    assert "already finished at step 4" in line and "It kept no checkpoint to continue from" in line
    assert "raise max_steps" not in line and "--resume weights" in line and "--resume never" in line


def test_a_larger_max_steps_keeps_the_finished_model(write_recipe, finished_without_checkpoint, caplog, monkeypatch):
    """It starts a new run (nothing to continue from), saying so once, and the old final model moves aside."""
    out = finished_without_checkpoint
    cfg = _cfg(write_recipe, max_steps=8)
    monkeypatch.setenv("RANK", "1")
    assert resume.plan(cfg).move_aside_to is not None and not caplog.records  # only rank 0 says so
    monkeypatch.undo()
    plan = resume.plan(cfg)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "finished at step 4 without a checkpoint" in warning and "final model included" in warning
    resume.start(plan, out, STATE)
    assert (out / "previous" / "run-a" / "model.safetensors").read_text() == "old model.safetensors"
    assert not (out / "model.safetensors").exists() and plan.run["run_id"] != "run-a"


def test_resume_weights_from_a_finished_runs_final_model(write_recipe, finished_without_checkpoint):
    out = finished_without_checkpoint
    plan = resume.plan(_cfg(write_recipe, resume="weights"))
    assert plan.model_path == str(out / "previous" / "run-a")
    resume.start(plan, out, STATE)
    assert (Path(plan.model_path) / "model.safetensors").read_text() == "old model.safetensors"


def test_resume_weights_of_an_adapter_says_what_it_cannot_load(write_recipe, tmp_path):
    out = tmp_path / "out"
    folder = out / "checkpoint-2"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-Math-7B"}))
    (folder / "adapter_model.safetensors").write_bytes(b"a" * 64)
    mark_complete(folder, 2, {"run_id": "run-a", "layout": LAYOUT})
    with pytest.raises(RecipeError) as e:
        resume.plan(_cfg(write_recipe, resume="weights"))
    message = str(e.value)
    assert "holds a LoRA adapter" in message and "trained on Qwen/Qwen2.5-Math-7B" in message
    assert "merge_and_unload()" in message and "resume: auto" in message and "ZeRO" not in message


def test_a_checkpoint_of_another_model_is_refused_before_it_loads(write_recipe, tmp_path, monkeypatch, capsys):
    from open_grpo import train

    out = tmp_path / "out"
    folder = _checkpoint(out, 2)
    mark_complete(folder, 2, {"run_id": "run-a", "layout": LAYOUT,
                              "model": {"name": "random:0.5b", "shape": _shape("random:0.5b"), "adapter": False}})  # fmt: skip
    recipe = write_recipe({"max_steps": 10})  # random:tiny
    monkeypatch.setattr(train, "resolve_model", lambda *a: pytest.fail("the model was touched"))
    assert train.cli(["--config", str(recipe)]) == 2
    message = capsys.readouterr().err
    assert f"{folder} was saved from another model than this launch's (random:0.5b)" in message
    assert "24 layers, hidden 896" in message and "random:tiny has 2 layers, hidden 64" in message
    for way in ("--output_dir DIR", "--resume never", "--resume weights", "model_name_or_path: random:0.5b"):
        assert way in message

    # a checkpoint from before markers recorded the model: its config.json tells
    (folder / "config.json").write_text(json.dumps(SHAPES["0.5b"].config_kwargs()))
    mark_complete(folder, 2, {"run_id": "run-a", "layout": LAYOUT})
    with pytest.raises(RecipeError, match="24 layers, hidden 896"):
        resume.plan(load_recipe(recipe))
    # a hub model whose shape was not known offline when the run started: the checkpoint's config.json tells too
    mark_complete(folder, 2, {"run_id": "run-a", "layout": LAYOUT,
                              "model": {"name": "org/model", "shape": None, "adapter": False}})  # fmt: skip
    with pytest.raises(RecipeError, match=r"another model than this launch's \(org/model\).*24 layers, hidden 896"):
        resume.plan(load_recipe(recipe))
    # an adapter resumed as a full fine-tune
    mark_complete(folder, 2, {"run_id": "run-a", "layout": LAYOUT,
                              "model": {"name": "random:tiny", "shape": _shape("random:tiny"), "adapter": True}})  # fmt: skip
    with pytest.raises(RecipeError, match="it holds a LoRA adapter, this launch trains a full model"):
        resume.plan(load_recipe(recipe))


def test_the_same_model_under_another_name_resumes(write_recipe, tmp_path, caplog):
    """A hub id replaced by a local copy of the same model (the README's offline setup) continues the run."""
    caplog.set_level(logging.INFO)
    folder = _checkpoint(tmp_path / "out", 2)
    mark_complete(folder, 2, {"run_id": "run-a", "layout": LAYOUT,
                              "model": {"name": "/models/tiny", "shape": _shape("random:tiny"), "adapter": False}})  # fmt: skip
    assert resume.plan(_cfg(write_recipe, max_steps=10)).checkpoint == str(folder)
    assert "saved from /models/tiny (the same shape)" in caplog.text


def test_checkpoints_record_the_model(write_recipe):
    plan = resume.plan(_cfg(write_recipe))
    assert plan.stamp["model"] == {"name": "random:tiny", "shape": _shape("random:tiny"), "adapter": False}


def test_a_finished_run_drops_its_preempted_marker(tmp_path, write_recipe):
    """PREEMPTED is the stop of a run that then resumed and finished: it no longer says anything true."""
    (tmp_path / PREEMPTED_MARKER).write_text("3\n")
    resume.write_run(tmp_path, {"run_id": "run-a", "recipe_hash": "h"})
    resume.finish(tmp_path, SimpleNamespace(global_step=8), _cfg(write_recipe).training)
    assert not (tmp_path / PREEMPTED_MARKER).exists() and resume.read_run(tmp_path)["finished"]["step"] == 8
