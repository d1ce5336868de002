"""Checkpoint markers, rotation, run identity, layouts and preemption pieces, without training (fast): the COMPLETE
schema, `save_total_limit` that never loses the last good checkpoint, `resume: auto/never/weights/<path>`, damaged
files, a layout change refused before any model, metrics readers, SIGTERM and the stop margin."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from open_grpo.recipe import RecipeError, load_recipe
from open_grpo.runs import resume
from open_grpo.trainer import checkpoints, preemption
from open_grpo.trainer.checkpoints import MARKER, mark_complete, read_marker, rotate, save_marked
from open_grpo.trainer.metrics import MetricsFile, format_summary, plot_rewards, read_metrics, summary
from tests.conftest import ROOT

LAYOUT = {
    "world_size": 1,
    "zero_stage": 0,
    "tp": 1,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
}  # fmt: skip  the demo recipe's layout, one process


def _checkpoint(out, step, run_id="run-a", layout=None, complete=True):
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w" * 64)
    (folder / "optimizer.pt").write_bytes(b"o" * 128)
    if complete:
        mark_complete(folder, step, {"run_id": run_id, "recipe_hash": "h", "layout": layout or LAYOUT})
    return folder


def _cfg(write_recipe, **changes):
    return load_recipe(write_recipe(changes))


# ------------------------------------------------------------------------------------------ marker and rotation


def test_complete_marker_records_producer_and_file_sizes(tmp_path):
    folder = _checkpoint(tmp_path, 4)
    (folder / "global_step4").mkdir()
    (folder / "global_step4" / "shard.pt").write_bytes(b"s" * 10)
    mark_complete(folder, 4, {"run_id": "run-a", "recipe_hash": "abc", "layout": LAYOUT}, save_seconds=1.5)
    record = json.loads((folder / MARKER).read_text())
    assert record["step"] == 4 and record["run_id"] == "run-a" and record["recipe_hash"] == "abc"
    assert record["layout"] == LAYOUT and record["save_seconds"] == 1.5
    assert record["files"] == {"config.json": 2, "global_step4/shard.pt": 10, "model.safetensors": 64,
                               "optimizer.pt": 128}  # fmt: skip
    (folder / "optimizer.pt").write_bytes(b"o" * 100)  # truncated after it was marked
    (folder / "global_step4" / "shard.pt").unlink()
    assert checkpoints.file_problems(folder, record) == ["global_step4/shard.pt is missing",
                                                         "optimizer.pt is 100 bytes, 128 when saved"]  # fmt: skip


def test_rotation_only_after_the_new_checkpoint_is_complete(tmp_path, monkeypatch):
    """save_total_limit 1, killed between save and mark: the only complete checkpoint must survive."""
    _checkpoint(tmp_path, 2)
    trainer = SimpleNamespace(
        args=SimpleNamespace(should_save=True, save_total_limit=1),
        state=SimpleNamespace(global_step=4, best_model_checkpoint=None),
        accelerator=SimpleNamespace(wait_for_everyone=lambda: None),
        run_stamp={"run_id": "run-a", "recipe_hash": "h", "layout": LAYOUT},
        _get_output_dir=lambda trial: str(tmp_path),
    )
    limits_seen = []

    def save():  # what the Trainer's own _save_checkpoint does: write files, then rotate with args.save_total_limit
        limits_seen.append(trainer.args.save_total_limit)
        (tmp_path / "checkpoint-4").mkdir()
        (tmp_path / "checkpoint-4" / "model.safetensors").write_bytes(b"w")

    def killed(*args, **kwargs):
        raise RuntimeError("killed before the marker")

    with monkeypatch.context() as m:
        m.setattr(checkpoints, "mark_complete", killed)
        with pytest.raises(RuntimeError):
            save_marked(trainer, save, None)
    assert limits_seen == [None]  # the Trainer's rotation did not run before the marker
    assert trainer.args.save_total_limit == 1
    assert read_marker(tmp_path / "checkpoint-2") is not None  # still there to resume from

    (tmp_path / "checkpoint-4").rename(tmp_path / "leftover")
    (tmp_path / "leftover").rename(tmp_path / "checkpoint-6")  # an incomplete leftover of an abandoned attempt
    save_marked(trainer, save, None)  # step 4 again, completed this time
    assert read_marker(tmp_path / "checkpoint-4")["step"] == 4
    assert [p.name for _, p in checkpoints.checkpoints(tmp_path)] == ["checkpoint-4"]


def test_temporary_files_of_a_save_killed_midway_are_not_part_of_the_next_one(tmp_path):
    """Killed mid-save at step 4 (kill -9), resumed from checkpoint-2, step 4 saved again into the same folder: the
    leftovers of the first attempt are cleaned and never listed in the new marker."""
    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    for leftover in ("COMPLETE.tmp", "tmpk2x9_q", "model.safetensors.tmp81", ".tmp_rng", "global_step4/tmp0a.pt"):
        (folder / leftover).parent.mkdir(exist_ok=True)
        (folder / leftover).write_bytes(b"partial")
    trainer = SimpleNamespace(
        args=SimpleNamespace(should_save=True, save_total_limit=None),
        state=SimpleNamespace(global_step=4, best_model_checkpoint=None),
        accelerator=SimpleNamespace(wait_for_everyone=lambda: None),
        run_stamp={"run_id": "run-a", "recipe_hash": "h", "layout": LAYOUT},
        _get_output_dir=lambda trial: str(tmp_path),
    )

    def save():
        (folder / "model.safetensors").write_bytes(b"w" * 8)
        (folder / "global_step4" / "optim.pt").write_bytes(b"o" * 8)
        (folder / "rng_state.pth.tmp").write_bytes(b"in flight")  # a write still under way when the marker is made

    save_marked(trainer, save, None)
    assert read_marker(folder)["files"] == {"global_step4/optim.pt": 8, "model.safetensors": 8}
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "COMPLETE", "global_step4/optim.pt", "model.safetensors", "rng_state.pth.tmp"]  # fmt: skip


def test_rotation_counts_complete_checkpoints_only(tmp_path):
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 8, complete=False)
    deleted = rotate(tmp_path, 2, keep=str(tmp_path / "checkpoint-2"))  # keep: the best checkpoint
    assert sorted(p.name for p in deleted) == ["checkpoint-8"]
    assert rotate(tmp_path, 1) == [tmp_path / "checkpoint-4", tmp_path / "checkpoint-2"]
    assert [p.name for _, p in checkpoints.checkpoints(tmp_path)] == ["checkpoint-6"]


# --------------------------------------------------------------------------------------------- resume settings


def test_resume_setting_in_wrong_case_is_a_clear_error(write_recipe):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe({"resume": "Auto"}))
    assert "'resume' must be one of auto, never, weights" in str(e.value) and "'Auto'" in str(e.value)
    with pytest.raises(RecipeError, match="no such folder"):
        load_recipe(write_recipe({"resume": "outputs/nowhere/checkpoint-3"}))


def test_recipe_hash_leaves_out_length_cadence_and_layout(write_recipe):
    cfg = _cfg(write_recipe)
    same = resume.recipe_hash(cfg)
    for override in (["--max_steps", "500"], ["--logging_steps", "5", "--save_steps", "10"], ["--resume", "never"]):
        assert resume.recipe_hash(load_recipe(cfg.path, override)) == same
    assert resume.recipe_hash(load_recipe(cfg.path, ["--learning_rate", "0.5"])) != same


def test_auto_takes_newest_checkpoint_whose_files_match(write_recipe, tmp_path, caplog):
    cfg = _cfg(write_recipe, max_steps=10)
    out = tmp_path / "out"
    _checkpoint(out, 2)
    _checkpoint(out, 4)
    (out / "checkpoint-4" / "optimizer.pt").write_bytes(b"cut")  # a full disk cut it short after the marker
    _checkpoint(out, 6, complete=False)
    plan = resume.plan(cfg)
    assert plan.checkpoint == str(out / "checkpoint-2")
    assert "skipping damaged checkpoint" in caplog.text and "optimizer.pt is 3 bytes, 128 when saved" in caplog.text
    # given explicitly, the damaged one is refused with the way out
    with pytest.raises(RecipeError) as e:
        resume.plan(load_recipe(cfg.path, ["--resume", str(out / "checkpoint-4")]))
    assert "checkpoint-4: optimizer.pt is 3 bytes" in str(e.value) and "delete it and resume from an earlier" in str(
        e.value
    )
    (out / "checkpoint-2" / "model.safetensors").unlink()
    with pytest.raises(RecipeError, match="no complete checkpoint with intact files is left"):
        resume.plan(cfg)


def test_never_moves_the_previous_run_aside_and_auto_never_adopts_it(write_recipe, tmp_path, caplog):
    out = tmp_path / "out"
    _checkpoint(out, 2, run_id="old")
    resume.write_run(out, {"run_id": "old", "recipe_hash": "h"})
    (out / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n')
    state = SimpleNamespace(wait_for_everyone=lambda: None, is_main_process=True)

    cfg = _cfg(write_recipe, resume="never")
    plan = resume.plan(cfg)
    assert plan.checkpoint is None and plan.run["run_id"] != "old"
    resume.start(plan, out, state)
    assert (out / "previous" / "old" / "checkpoint-2" / MARKER).is_file()
    assert (out / "previous" / "old" / "metrics.jsonl").is_file() and not (out / "metrics.jsonl").exists()
    assert resume.read_run(out)["run_id"] == plan.run["run_id"]

    # killed before its first checkpoint, requeued with `auto`: a fresh start of the new run, not the old checkpoint
    auto = resume.plan(_cfg(write_recipe))
    assert auto.checkpoint is None and auto.run["run_id"] == plan.run["run_id"]

    # another run's checkpoint in this output_dir is skipped, saying so
    _checkpoint(out, 8, run_id="someone-else")
    auto = resume.plan(_cfg(write_recipe))
    assert auto.checkpoint is None
    assert "not resuming from" in caplog.text and "saved by run someone-else" in caplog.text


def test_finished_run_is_not_trained_again(write_recipe, tmp_path):
    out = tmp_path / "out"
    _checkpoint(out, 6)
    resume.write_run(out, {"run_id": "run-a", "recipe_hash": "h", "finished": {"step": 6, "max_steps": 6}})
    plan = resume.plan(_cfg(write_recipe, max_steps=6))
    assert plan.finished and str(out) in plan.finished and "raise max_steps" in plan.finished
    assert "--resume never" in plan.finished
    raised = resume.plan(_cfg(write_recipe, max_steps=9))  # raising max_steps continues the same run
    assert raised.finished is None and raised.checkpoint == str(out / "checkpoint-6")
    (out / "run.json").unlink()  # no record (killed after the last save): the checkpoint's step tells
    assert resume.plan(_cfg(write_recipe, max_steps=6)).finished


# ----------------------------------------------------------------------------------------------------- layouts


@pytest.fixture
def keep_signal_handlers():
    """`train.main` installs SIGUSR1/SIGTERM handlers in this process: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_layout_change_is_refused_before_any_model(write_recipe, tmp_path, monkeypatch, capsys, keep_signal_handlers):
    from open_grpo import train

    out = tmp_path / "out"
    _checkpoint(out, 4, layout={**LAYOUT, "world_size": 4, "zero_stage": 3})
    monkeypatch.setattr(train, "resolve_model", lambda *a: pytest.fail("the model (cache) was touched"))
    recipe = write_recipe({"max_steps": 10})
    with pytest.raises(RecipeError) as e:
        train.main(str(recipe))
    message = str(e.value)
    assert "saved with world size 4, ZeRO stage 3" in message and "now world size 1, ZeRO stage 0" in message
    assert "resume: weights" in message and "ds_to_universal.py" in message
    assert train.cli(["--config", str(recipe)]) == 2
    assert "saved with world size 4" in capsys.readouterr().err

    cfg = load_recipe(recipe)
    monkeypatch.setenv("WORLD_SIZE", "4")  # what the launcher of the saved layout sets
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert resume.plan(cfg).checkpoint == str(out / "checkpoint-4")


def test_universal_checkpoint_resumes_on_a_new_layout(write_recipe, tmp_path):
    out = tmp_path / "out"
    folder = _checkpoint(out, 4, layout={**LAYOUT, "world_size": 4})
    (folder / "latest").write_text("global_step4_universal")  # after DeepSpeed's ds_to_universal.py
    assert resume.plan(_cfg(write_recipe, max_steps=10)).checkpoint == str(folder)


def test_resume_weights_starts_a_new_run_from_the_saved_model(write_recipe, tmp_path):
    out = tmp_path / "out"
    _checkpoint(out, 4, layout={**LAYOUT, "world_size": 4})
    resume.write_run(out, {"run_id": "run-a", "recipe_hash": "h"})
    plan = resume.plan(_cfg(write_recipe, resume="weights"))
    assert plan.checkpoint is None and plan.model_path == str(out / "previous" / "run-a" / "checkpoint-4")
    resume.start(plan, out, SimpleNamespace(wait_for_everyone=lambda: None, is_main_process=True))
    assert (out / "previous" / "run-a" / "checkpoint-4" / "model.safetensors").is_file()
    again = resume.plan(_cfg(write_recipe))  # requeued before its first checkpoint: the same weights again
    assert again.model_path == plan.model_path and again.run["run_id"] == plan.run["run_id"]


# ----------------------------------------------------------------------------------------------------- metrics


def test_metrics_readers_tolerate_none_rewards_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward": null, "time/step": 1.0}\n{"step": 2, "reward": 0.5}\n{"step": 3, "rew')
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2]
    s = summary(rows)  # two steps: the first and the second half, one step each
    assert s["reward_first"] is None and s["reward_last"] == 0.5 and s["steps"] == 2
    assert "reward, first 1 logged steps: n/a" in format_summary(s, tmp_path)
    plot_rewards(rows, tmp_path / "curve.png")
    nothing = summary([{"step": 1, "reward": None}])
    assert nothing["reward_first"] is None and "reward, first 1 logged steps: n/a" in format_summary(nothing, tmp_path)


def test_summary_of_a_short_run_compares_its_halves():
    rows = [{"step": i + 1, "reward": r} for i, r in enumerate([0.6, 0.6, 0.7, 0.7])]
    s = summary(rows)
    assert s["window"] == 2 and s["reward_gain"] == pytest.approx(0.1)
    assert summary(rows * 10)["window"] == 10


def test_metrics_after_a_resume_hold_each_step_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "reward": 0.1 * s} for s in (1, 2, 3, 4)] + [{"step": 2, "train_runtime": 9.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "rew')
    state = SimpleNamespace(is_world_process_zero=True, global_step=2)  # resumed from checkpoint-2
    MetricsFile(tmp_path).on_train_begin(None, state, None)
    assert read_metrics(path) == rows[:2]


# -------------------------------------------------------------------------------------------------- preemption


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])  # SIGINT: Ctrl-C, stops like SIGTERM
def test_a_signal_requests_a_stop_its_forwarded_copy_is_ignored_and_a_second_one_ends_the_process(signum):
    """The first signal asks for a stop (no KeyboardInterrupt); the same signal right after it is the launcher passing
    it on (torchrun forwards what it got to every worker): ignored; a second one later ends the process."""
    code = textwrap.dedent(f"""
        import os, signal, time
        from open_grpo.trainer import preemption
        preemption.FORWARDED_WITHIN_S = 0.5
        stop = preemption.install()
        os.kill(os.getpid(), {int(signum)})
        print("stop requested:", stop.local(), stop.signal_name, flush=True)
        os.kill(os.getpid(), {int(signum)})
        print("forwarded copy ignored", flush=True)
        time.sleep(0.6)
        os.kill(os.getpid(), {int(signum)})
        print("still alive")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert f"stop requested: True {signal.Signals(signum).name}" in done.stdout, done.stderr
    assert "forwarded copy ignored" in done.stdout and "Traceback" not in done.stderr
    assert "still alive" not in done.stdout and done.returncode == -signum


def test_stop_margin_warning(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(preemption.STOP_MARGIN_ENV, raising=False)
    assert preemption.warn_if_margin_short("Qwen/Qwen2.5-Math-7B", 3) is None  # not under SLURM: no margin
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # the sbatch's default margin, 180 s
    warning = preemption.warn_if_margin_short("Qwen/Qwen2.5-Math-7B", 3)
    assert warning and "180 s stop margin" in warning and "sbatch --signal=B:USR1@" in warning
    assert preemption.warn_if_margin_short("Qwen/Qwen2.5-Math-1.5B", 3) is None
    monkeypatch.setenv(preemption.STOP_MARGIN_ENV, "600")
    assert preemption.warn_if_margin_short("Qwen/Qwen2.5-Math-7B", 3) is None
