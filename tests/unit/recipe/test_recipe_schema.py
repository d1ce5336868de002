"""Every option declared once: the recipe keys' snapshot equals the installed TRL / transformers / PEFT, each key is a
field of exactly one dataclass, the trainer takes no options of its own, and train and the benchmark build it the
same way."""

import dataclasses
import inspect
import re

from trl import GRPOConfig, ModelConfig

from open_grpo.recipe import schema
from open_grpo.recipe.keys import ScriptArguments
from open_grpo.recipe.options import OpenGRPOOptions, trl_behaviour
from open_grpo.recipe.snapshot import live_snapshot, render
from open_grpo.trainer.config import OpenGRPOConfig
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer
from tests.conftest import ROOT


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def test_snapshot_is_the_installed_libraries():
    """Regenerate with `python -m open_grpo.recipe.snapshot` after changing the pinned versions."""
    assert schema.SNAPSHOT.read_text() == render(live_snapshot())


def test_trl_choices_come_from_its_trainer():
    keys = schema.keys()
    assert set(keys["loss_type"].choices) == {"grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"}
    assert set(keys["scale_rewards"].choices) == {"group", "batch", "none"} and "bool" in keys["scale_rewards"].type
    assert "cosine" in keys["lr_scheduler_type"].choices and "adamw_torch" in keys["optim"].choices
    assert {"wandb", "none", "all", "tensorboard"} <= set(keys["report_to"].choices)
    assert {"sdpa", "eager", "flash_attention_2"} <= set(keys["attn_implementation"].choices)


def test_every_key_is_one_field_of_one_dataclass():
    own, script, trl, model = _names(OpenGRPOOptions), _names(ScriptArguments), _names(GRPOConfig), _names(ModelConfig)
    sets = {"OpenGRPOOptions": own, "ScriptArguments": script, "GRPOConfig": trl, "ModelConfig": model}
    for a, names_a in sets.items():
        for b, names_b in sets.items():
            assert a == b or not names_a & names_b, f"{a} and {b} both declare {names_a & names_b}"
    assert _names(OpenGRPOConfig) == own | trl  # the trainer's config: open_grpo's options + TRL's, nothing else
    assert set(schema.keys()) == own | script | trl | model
    for f in dataclasses.fields(OpenGRPOOptions) + dataclasses.fields(ScriptArguments):
        assert f.metadata.get("help"), f"{f.name} has no help"
    assert set(trl_behaviour()) <= own


def test_trainer_reads_its_options_from_args():
    """No keyword arguments of its own (with defaults of their own): every option is `self.args.<option>`."""
    params = inspect.signature(OpenGRPOTrainer.__init__).parameters
    assert list(params) == ["self", "args", "tool_stats", "kwargs"]  # tool_stats: an object, not an option
    source = inspect.getsource(OpenGRPOTrainer.__init__)
    for name in _names(OpenGRPOOptions) - {"gradient_checkpointing_auto"}:
        assert name not in params
    assert "trainer_options" not in (ROOT / "src" / "open_grpo" / "trainer" / "grpo_trainer.py").read_text()
    assert "gradient_checkpointing_auto" in source  # set by the recipe layer, not a key: read from args too


def test_train_and_bench_share_one_trainer_builder():
    src = ROOT / "src" / "open_grpo"
    built = re.compile(r"(=|return)\s*OpenGRPOTrainer\(")
    builders = [p.relative_to(src).as_posix() for p in src.rglob("*.py") if built.search(p.read_text())]
    assert builders == ["trainer/builder.py"]
    for user in ("train.py", "bench/worker.py"):
        assert "build_trainer(" in (src / user).read_text(), user
