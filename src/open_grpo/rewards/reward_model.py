"""`reward_model`: a sequence-classification model with one output (`num_labels=1`) scores prompt + completion.

    rewards:
      - {name: reward_model, path: Skywork/Skywork-Reward-V2-Qwen3-0.6B}     # a hub id (downloaded beforehand)
      - {name: accuracy, weight: 1.0}
    # or a local folder: {name: reward_model, path: /models/my-rm, dtype: bfloat16, weight: 0.5}

TRL's GRPOTrainer runs it (hooks.runs_in_trainer): it writes each prompt + completion with the reward model's own
tokenizer and chat template, pads on the right and takes the score at the last token; under DeepSpeed it wraps the
model for inference (sharded under ZeRO-3, a full copy per GPU under ZeRO-1/2), under FSDP it shards it as the
policy, otherwise it moves it to the rank's device. Its weights count in `open-grpo check`'s memory plan as
`reward_models`. A raw score is whatever the model was trained to output (often unbounded): weigh it against the
other rewards accordingly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from open_grpo.errors import RecipeError
from open_grpo.rewards.hooks import checks_params, runs_in_trainer

NAME = "reward_model"  # the reward's registered name (pyproject.toml), which the memory plan counts
DTYPES = ("auto", "bfloat16", "float16", "float32")
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the hub spells repository ids
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def _check(params: dict[str, Any]) -> list[str]:
    path, dtype = params["path"], params["dtype"]
    problems = [] if dtype in DTYPES else [f"'dtype' must be one of {', '.join(DTYPES)}, got {dtype!r}"]
    if not isinstance(path, str) or not path.strip():
        return problems + [f"'path' must be a local folder or a hub id (owner/name), got {path!r}"]
    folder = Path(path).expanduser()
    if folder.is_dir():
        return problems + folder_problems(folder)
    if not HUB_ID.match(path) or path.startswith((".", "~")):
        problems.append(
            f"'path' {path!r} is neither a local folder nor a hub id (owner/name): give the reward model's folder "
            "(with config.json and its tokenizer) or its hub id"
        )
    return problems


def folder_problems(folder: Path) -> list[str]:
    """What keeps a local folder from being a reward model TRL can run: no config.json, a model that is not a
    sequence classifier (loaded as one it would get a random score head), several labels, no tokenizer or no chat
    template (the prompts are chat messages, and TRL writes prompt + completion with the reward model's template)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        return [f"'path' {str(folder)!r} has no config.json: give the reward model's folder"]
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as e:
        return [f"cannot read {config_file}: {e}"]
    problems = []
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        problems.append(
            f"{str(folder)!r} holds a {', '.join(architectures)} checkpoint, not a sequence classifier: loaded as "
            "one it would get a randomly initialised score head (rewards of noise); give a reward model "
            "(architectures: *ForSequenceClassification)"
        )
    labels = len(config.get("id2label") or {0: ""})
    if labels != 1:
        problems.append(f"{str(folder)!r} has {labels} labels: TRL reads one score per sequence (num_labels=1)")
    tokenizer_config = folder / "tokenizer_config.json"
    if not tokenizer_config.is_file() and not (folder / "tokenizer.json").is_file():
        problems.append(f"{str(folder)!r} has no tokenizer (tokenizer_config.json): save it beside the model")
    elif not _has_chat_template(folder):
        problems.append(
            f"{str(folder)!r} has no chat template: TRL writes each chat prompt + completion with the reward model's "
            "template; save the tokenizer with one (tokenizer.chat_template = ...; tokenizer.save_pretrained(path))"
        )
    return problems


def _has_chat_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _load(params: dict[str, Any]):
    """The model TRL runs: `AutoModelForSequenceClassification` with one label, as TRL itself loads a path."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(params["path"], num_labels=1, dtype=params["dtype"])


@checks_params(_check)
@runs_in_trainer(_load)
def reward_model(completions, *, path: str, dtype: str = "auto", **columns) -> list[float | None]:
    """A sequence-classification reward model (num_labels=1) scores prompt + completion; TRL's trainer runs it."""
    raise RuntimeError("reward_model is run by TRL's trainer (GRPOTrainer reward_funcs), not called directly")


@dataclass(frozen=True)
class RewardModelSize:
    """One reward model as the memory plan counts it."""

    path: str
    params: int
    dtype: str | None  # None: not stated anywhere (transformers loads float32)

    @property
    def bytes_per_param(self) -> int:
        return DTYPE_BYTES.get(self.dtype or "float32", 4)


def planned_reward_models(specs) -> tuple[list[RewardModelSize], list[str]]:
    """The recipe's reward models with their parameter counts (from config.json: a local folder, the local hub cache),
    and a note for each one whose size is unknown (left out of the plan)."""
    from open_grpo.planning.model_shapes import find_shape

    sizes, notes = [], []
    for spec in specs:
        if spec.name != NAME:
            continue
        path = spec.params["path"]
        try:
            shape, where = find_shape(path)
        except RecipeError as e:
            shape, where = None, str(e)
        if shape is None:
            notes.append(f"reward model {path!r} left out of the memory plan: {where}")
            continue
        h = shape.hidden_size
        lm_head = 0 if shape.tie_word_embeddings else shape.vocab_size * h  # a classifier has a score head instead
        dtype = spec.params.get("dtype", "auto")
        dtype = _config_dtype(path) if dtype == "auto" else dtype
        sizes.append(RewardModelSize(path, shape.num_params - lm_head + h, dtype))
    return sizes, notes


def loaded_sizes(reward_funcs) -> list[RewardModelSize]:
    """The reward models among `GRPOTrainer`'s `reward_funcs`, as loaded (for the trainer's start-up plan)."""
    import torch

    sizes = []
    for func in reward_funcs:
        if isinstance(func, torch.nn.Module):
            params = list(func.parameters())
            count = sum(getattr(p, "ds_numel", p.numel()) for p in params)  # ZeRO-3 loads them partitioned
            dtype = str(params[0].dtype).removeprefix("torch.") if params else None
            sizes.append(RewardModelSize(getattr(func, "name_or_path", ""), count, dtype))
    return sizes


def _config_dtype(path: str) -> str | None:
    """The dtype `dtype: auto` loads: config.json's `dtype` (`torch_dtype` in older files)."""
    from open_grpo.planning.model_shapes import cached_config

    config = Path(path) / "config.json"
    found = config if config.is_file() else cached_config(path)
    try:
        data = json.loads(found.read_text()) if found else {}
    except (OSError, ValueError):
        return None
    dtype = data.get("dtype") or data.get("torch_dtype")
    return dtype if dtype in DTYPE_BYTES else None
