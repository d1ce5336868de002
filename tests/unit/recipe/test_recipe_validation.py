"""`check`, `launch-args` and the trainer's start-up check are as strict as TRL, transformers, PEFT, torch and vLLM:
every value they would refuse (at parse time, at start-up, mid-run or silently) is refused before anything loads,
exit 2, naming the key, all problems in one list (#22, #23).

Each corpus row says who refuses the value and where; `test_the_libraries_refuse_it_too` asks them (the CPU ones
here, vLLM's in the gpu-marked test), so the corpus cannot claim a refusal that is not real."""

import math

import pytest
import yaml

from open_grpo.cli import main as cli
from open_grpo.errors import EXIT_CONFIG_ERROR, RecipeError
from open_grpo.recipe import load_recipe
from tests.conftest import ROOT

CONSTRUCT = "GRPOConfig / TrainingArguments / ModelConfig construction"
TRL_TRAINER = "TRL's trainer, mid-run (`Unknown ...` in the branch that reads it)"
REPORTING = "transformers' Trainer start-up (reporting integrations)"
ATTENTION = "transformers' model loading"
TORCH_DTYPE = "TRL's model loading (getattr(torch, dtype))"
PEFT = "PEFT's get_peft_model"
TORCH_OPTIM = "torch.optim.AdamW at the first optimizer step"
NUMPY_SEED = "transformers.set_seed (numpy's seed range)"
DATALOADER = "torch's DataLoader"
VLLM = "vLLM's SamplingParams / engine start-up"
SILENT = "nothing: the run silently does something else"

LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8}
EVAL = {"eval_dataset_name": "reasoning-gym:basic_arithmetic", "eval_dataset_size": 8, "eval_strategy": "steps",
        "eval_steps": 10}  # fmt: skip
WORLD = 8  # the target world size of check and launch-args, and WORLD_SIZE of the start-up check

# (changes to the demo recipe, the key the error must name, who refuses it)
CORPUS = [
    ({"loss_type": "grpoo"}, "loss_type", TRL_TRAINER),
    ({"scale_rewards": "groupp"}, "scale_rewards", TRL_TRAINER),
    ({"importance_sampling_level": "seq"}, "importance_sampling_level", TRL_TRAINER),
    ({"vllm_importance_sampling_mode": "token"}, "vllm_importance_sampling_mode", TRL_TRAINER),
    ({"multi_objective_aggregation": "sum"}, "multi_objective_aggregation", TRL_TRAINER),
    ({"vllm_mode": "colo"}, "vllm_mode", TRL_TRAINER),
    ({"report_to": "wandbb"}, "report_to", REPORTING),
    ({"report_to": ["tensorboard", "wandbb"]}, "report_to", REPORTING),
    ({"attn_implementation": "flash_attn_9"}, "attn_implementation", ATTENTION),
    ({"dtype": "float8"}, "dtype", TORCH_DTYPE),
    ({"lr_scheduler_type": "cosine_warm"}, "lr_scheduler_type", CONSTRUCT),
    ({"optim": "adamw_foo"}, "optim", CONSTRUCT),
    ({"save_strategy": "always"}, "save_strategy", CONSTRUCT),
    ({"logging_strategy": "step"}, "logging_strategy", CONSTRUCT),
    ({"hub_strategy": "never"}, "hub_strategy", CONSTRUCT),
    ({"logging_steps": 0}, "logging_steps", CONSTRUCT),
    ({"warmup_steps": -1}, "warmup_steps", CONSTRUCT),
    ({"num_generations": 1, "per_device_train_batch_size": 8}, "num_generations", CONSTRUCT),
    ({"auto_find_batch_size": True}, "auto_find_batch_size", CONSTRUCT),
    ({"fp16": True, "bf16": True}, "fp16", CONSTRUCT),
    ({"load_in_4bit": True, "load_in_8bit": True, **LORA}, "load_in_4bit", CONSTRUCT),
    ({"generation_batch_size": 32, "steps_per_generation": 2}, "generation_batch_size", CONSTRUCT),
    (
        {"vllm_importance_sampling_clip_min": 2.0, "vllm_importance_sampling_clip_max": 1.0},
        "vllm_importance_sampling_clip_min",
        CONSTRUCT,
    ),  # fmt: skip
    # the batch arithmetic at the target world size (8): what TRL checks at start-up on every rank
    ({**EVAL, "per_device_eval_batch_size": 4, "num_generations_eval": 3}, "num_generations_eval", CONSTRUCT),
    ({"per_device_train_batch_size": 3, "num_generations": 16}, "num_generations", CONSTRUCT),
    ({"generation_batch_size": 100}, "generation_batch_size", CONSTRUCT),
    ({"temperature": -1.0}, "temperature", VLLM),
    ({"temperature": 0.0}, "temperature", SILENT),  # vLLM takes 0 (greedy); TRL divides the logits by it
    ({"temperature": 2.5, "use_vllm": True}, "temperature", VLLM),
    ({"top_p": 1.5}, "top_p", VLLM),
    ({"top_p": 0.0}, "top_p", VLLM),
    ({"top_k": -5}, "top_k", VLLM),
    ({"min_p": 2.0}, "min_p", VLLM),
    ({"repetition_penalty": 0.0}, "repetition_penalty", VLLM),
    ({"vllm_gpu_memory_utilization": 1.5, "use_vllm": True}, "vllm_gpu_memory_utilization", VLLM),
    ({"learning_rate": -1e-6}, "learning_rate", TORCH_OPTIM),
    ({"weight_decay": -0.1}, "weight_decay", TORCH_OPTIM),
    ({"adam_beta2": 1.0}, "adam_beta2", TORCH_OPTIM),
    ({"seed": -1}, "seed", NUMPY_SEED),
    ({"dataloader_num_workers": -1}, "dataloader_num_workers", DATALOADER),
    ({**LORA, "lora_target_modules": ["qproj"]}, "lora_target_modules", PEFT),
    ({**LORA, "lora_target_modules": r".*norm"}, "lora_target_modules", PEFT),
    ({**LORA, "lora_target_modules": ["lm_head", "q_proj"]}, "lora_target_modules", SILENT),  # TRL's start-up
    ({**LORA, "lora_task_type": "CAUSAL"}, "lora_task_type", PEFT),
    ({**LORA, "lora_r": 0}, "lora_r", PEFT),
    ({"max_steps": 0}, "max_steps", SILENT),  # transformers trains num_train_epochs instead
    ({"max_steps": -5}, "max_steps", SILENT),
    ({"rewards": [{"name": "lowercase_letters", "weight": math.nan}]}, "weight", SILENT),  # NaN advantages
    ({"sync_ref_model": True, "beta": 0.0}, "sync_ref_model", SILENT),  # TRL's start-up
]
IDS = [f"{key}={next(iter(changes.values()))!r}"[:60] for changes, key, _ in CORPUS]


@pytest.fixture
def recipe(tmp_path):
    def write(changes):
        config = {**yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text()), "output_dir": str(tmp_path / "out")}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({**config, **changes}))
        return path

    return write


@pytest.mark.parametrize("changes,key,_", CORPUS, ids=IDS)
def test_check_and_launch_args_refuse_it(recipe, capsys, monkeypatch, changes, key, _):
    monkeypatch.setattr("open_grpo.planning.gpus.visible_gpus", lambda: [])
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    path = str(recipe(changes))
    assert cli(["check", path, "--gpus-per-node", str(WORLD)]) == EXIT_CONFIG_ERROR
    captured = capsys.readouterr()
    assert f"'{key}'" in captured.err and not captured.out
    assert cli(["launch-args", path, "--nodes", "1", "--gpus-per-node", str(WORLD)]) == EXIT_CONFIG_ERROR
    captured = capsys.readouterr()
    assert f"'{key}'" in captured.err and not captured.out


@pytest.mark.parametrize("changes,key,_", CORPUS, ids=IDS)
def test_the_start_up_check_refuses_it(recipe, monkeypatch, changes, key, _):
    """`python -m open_grpo.train` under a launcher of WORLD ranks: refused before torch, any model or the output_dir
    are touched; a config built in code (the benchmark, a script) by OpenGRPOConfig itself."""
    from open_grpo import train
    from open_grpo.recipe import schema
    from open_grpo.trainer.config import OpenGRPOConfig

    monkeypatch.setenv("WORLD_SIZE", str(WORLD))
    path = recipe(changes)
    with pytest.raises(RecipeError) as e:
        train.main(str(path))
    assert f"'{key}'" in str(e.value)
    assert not (path.parent / "out").exists()
    training = {k: v for k, v in changes.items() if schema.keys()[k].section == "training"}
    if key in training:
        with pytest.raises(RecipeError, match=f"'{key}'"):
            OpenGRPOConfig(
                **{"output_dir": str(path.parent / "code"), "use_cpu": True, "report_to": "none", **training}
            )


def _refused(call) -> bool:
    try:
        call()
    except (ValueError, TypeError, AttributeError, ImportError):
        return True
    return False


def _tiny_model(**kwargs):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from open_grpo.planning.model_shapes import SHAPES

    return AutoModelForCausalLM.from_config(
        Qwen2Config(**{**SHAPES["tiny"].config_kwargs(), "vocab_size": 64}), **kwargs
    )


def _asked(changes: dict, key: str, who: str, monkeypatch) -> bool:
    """Whether the library the corpus names refuses the value."""
    import numpy
    import torch
    from trl import GRPOConfig, ModelConfig

    from open_grpo.recipe import schema
    from open_grpo.recipe.lora_targets import target_modules

    value = changes[key] if key in changes else None
    sections = {s: {k: v for k, v in changes.items() if schema.keys()[k].section == s} for s in ("training", "model")}
    if who == CONSTRUCT:
        monkeypatch.setattr(GRPOConfig, "world_size", property(lambda self: WORLD))  # TRL's arithmetic at WORLD
        base = {"output_dir": "/tmp/unused", "use_cpu": True, "report_to": "none", "bf16": False}
        return _refused(lambda: GRPOConfig(**{**base, **sections["training"]})) or _refused(
            lambda: ModelConfig(**sections["model"])
        )
    if who == TRL_TRAINER:
        import trl.trainer.grpo_trainer

        from open_grpo.recipe.snapshot import trl_branch_choices

        return value not in trl_branch_choices(trl.trainer.grpo_trainer, [key])[key]
    if who == REPORTING:
        from transformers.integrations.integration_utils import get_reporting_integration_callbacks

        return _refused(lambda: get_reporting_integration_callbacks(value if isinstance(value, list) else [value]))
    if who == ATTENTION:
        return _refused(lambda: _tiny_model(attn_implementation=value))
    if who == TORCH_DTYPE:
        return _refused(lambda: getattr(torch, value))
    if who == PEFT:
        from peft import LoraConfig, get_peft_model

        lora = {"r": changes["lora_r"], "target_modules": target_modules(changes.get("lora_target_modules"))}
        if "lora_task_type" in changes:
            lora["task_type"] = changes["lora_task_type"]
        return _refused(lambda: get_peft_model(_tiny_model(), LoraConfig(**lora)))
    if who == TORCH_OPTIM:
        kwargs = {"lr": changes.get("learning_rate", 1e-3), "weight_decay": changes.get("weight_decay", 0.0),
                  "betas": (0.9, changes.get("adam_beta2", 0.999))}  # fmt: skip
        return _refused(lambda: torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], **kwargs))
    if who == NUMPY_SEED:
        return _refused(lambda: numpy.random.seed(value))
    if who == DATALOADER:
        return _refused(lambda: torch.utils.data.DataLoader([1], num_workers=value))
    raise AssertionError(who)


CPU_REFUSALS = [row for row in CORPUS if row[2] not in (VLLM, SILENT)]


@pytest.mark.parametrize("changes,key,who", CPU_REFUSALS, ids=[f"{r[1]}:{r[2][:20]}" for r in CPU_REFUSALS])
def test_the_libraries_refuse_it_too(monkeypatch, changes, key, who):
    assert _asked(changes, key, who, monkeypatch), f"{who} accepts {changes}: the corpus row is wrong"


@pytest.mark.gpu
@pytest.mark.parametrize("changes,key,who", [r for r in CORPUS if r[2] == VLLM], ids=lambda x: str(x)[:40])
def test_vllm_refuses_the_sampling_values_too(changes, key, who):
    vllm = pytest.importorskip("vllm")
    if key == "vllm_gpu_memory_utilization":
        pytest.skip("checked by vLLM's engine start-up (CacheConfig), not SamplingParams")
    assert _refused(lambda: vllm.SamplingParams(**{key: changes[key]}))


def test_six_different_mistakes_in_one_run(recipe, capsys):
    """#23's Done: unknown key, wrong type, bad enum, negative count, cross-field conflict, bad reward spec."""
    path = recipe({
        "learning_rat": 1e-6,
        "num_generations": "eight",
        "lr_scheduler_type": "cosine_warm",
        "max_completion_length": -4,
        "datasets": [{"name": "reasoning-gym:basic_arithmetic"}],  # besides dataset_name
        "rewards": [{"name": "acuracy"}],
    })  # fmt: skip
    assert cli(["check", str(path)]) == EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert "6 problems" in err
    for expected in ("'learning_rat'. Did you mean 'learning_rate'", "'num_generations' must be int",
                     "'lr_scheduler_type' must be one of", "'max_completion_length' must be at least 1",
                     "either 'dataset_name' (one source) or 'datasets'", "Unknown reward 'acuracy'"):  # fmt: skip
        assert expected in err, expected
    from open_grpo.train import cli as train_cli

    assert train_cli(["--config", str(path)]) == EXIT_CONFIG_ERROR
    assert "6 problems" in capsys.readouterr().err


def test_overrides_are_checked_in_the_same_pass(capsys):
    """The issue's list as command-line overrides of a shipped recipe: one run, every key named."""
    argv = ["check", "qwen-math-1.5b", "--loss_type", "grpoo", "--scale_rewards", "groupp", "--report_to", "wandbb",
            "--attn_implementation", "flash_attn_9", "--temperature", "-1", "--top_p", "1.5", "--max_steps", "0",
            "--num_generations_eval", "3", "--learnin_rate", "3"]  # fmt: skip
    assert cli(argv) == EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    for key in ("loss_type", "scale_rewards", "report_to", "attn_implementation", "temperature", "top_p", "max_steps",
                "num_generations_eval", "--learning_rate"):  # fmt: skip
        assert f"'{key}'" in err, key


@pytest.mark.parametrize(
    "changes",
    [{"temperature": 2.0, "use_vllm": True, "vllm_mode": "colocate"}, {"top_p": 1.0, "top_k": -1, "min_p": 0.0},
     {"scale_rewards": False}, {"report_to": ["tensorboard"]}, {"attn_implementation": "kernels-community/flash-attn"},
     {"max_steps": -1, "num_train_epochs": 1}, {"lr_scheduler_type": "cosine_with_min_lr"},
     {**LORA, "lora_target_modules": r".*\.mlp\..*_proj"}, {**LORA, "lora_target_modules": "all-linear"},
     {"seed": 0}, {"loss_type": "dr_grpo"}],
)  # fmt: skip
def test_values_the_libraries_take_are_taken(recipe, changes):
    load_recipe(recipe(changes), world_size=WORLD)


def test_an_unquoted_yaml_no_for_a_string_key_says_quote_it(recipe):
    path = recipe({})
    path.write_text(path.read_text().replace("save_strategy: 'no'", "save_strategy: no"))
    with pytest.raises(RecipeError, match="'save_strategy' must be str .* got False .*quote it"):
        load_recipe(path)
