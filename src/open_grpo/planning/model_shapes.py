"""One table of model shapes: what `open-grpo check` plans with and what `random:<shape>` builds (tiny.py).

A model's shape comes, in this order, from a `random:<shape>` name (this table), a local folder's `config.json`,
the local Hugging Face hub cache (`config.json` of a model downloaded before; never the network), or this table's
hub ids (the models the shipped recipes name, so `check` works on a machine that never downloaded them). A model
none of these knows has no shape: the preflight then checks what needs none and says the memory plan was skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from open_grpo.errors import RecipeError

# Embedding rows of Qwen2.5 checkpoints (`vocab_size` in Qwen/Qwen2.5-*/config.json): the tokenizer's ids padded
# for GPU efficiency, to 151,936 for 0.5B and 1.5B, to 152,064 for 7B.
QWEN25_VOCAB_SIZE = 151936
QWEN25_7B_VOCAB_SIZE = 152064
# Qwen2.5's tokenizer has 151,643 byte-level BPE ids + 22 special tokens (tiny.QWEN25_SPECIAL_TOKENS); the tiny
# random model has exactly one embedding row per id.
QWEN25_TOKENIZER_IDS = 151665

REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
RANDOM_PREFIX = "random:"  # models.py builds these


@dataclass(frozen=True)
class ModelShape:
    """What the memory plan needs of a decoder-only transformer (Qwen2/Llama layout: attention + gated MLP)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int | None = None  # config.json's, where it is not hidden_size / heads (Qwen3, Gemma)
    model_type: str = "qwen2"  # config.json's: which module names the model has (recipe/lora_targets.py)

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def num_params(self) -> int:
        h, q, kv = (
            self.hidden_size,
            self.num_attention_heads * self.head_size,
            self.num_key_value_heads * self.head_size,
        )
        attn = h * q + 2 * h * kv + q * h + q + 2 * kv  # q, k, v, o (+ q/k/v biases, as Qwen2)
        mlp = 3 * h * self.intermediate_size
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return embed + self.num_hidden_layers * (attn + mlp + 2 * h) + h

    def config_kwargs(self) -> dict:
        """The shape as `transformers.Qwen2Config` keyword arguments."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_type"}
        if out["head_dim"] is None:
            del out["head_dim"]
        return out


# Qwen2.5 shapes (config.json of Qwen/Qwen2.5-{0.5B,1.5B,7B}; the Math, Coder and Instruct models share them).
SHAPES: dict[str, ModelShape] = {
    "tiny": ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=128, vocab_size=QWEN25_TOKENIZER_IDS, tie_word_embeddings=True),
    "0.5b": ModelShape(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                       intermediate_size=4864, vocab_size=QWEN25_VOCAB_SIZE, tie_word_embeddings=True),
    "1.5b": ModelShape(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                       intermediate_size=8960, vocab_size=QWEN25_VOCAB_SIZE, tie_word_embeddings=True),
    "7b": ModelShape(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                     intermediate_size=18944, vocab_size=QWEN25_7B_VOCAB_SIZE, tie_word_embeddings=False),
}  # fmt: skip

# Hub ids the shipped recipes name -> their shape, for planning on a machine that never downloaded them.
HUB_MODELS = {
    "Qwen/Qwen2.5-Math-1.5B": "1.5b",
    "Qwen/Qwen2.5-Math-7B": "7b",
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": "1.5b",
    "Qwen/Qwen2.5-1.5B-Instruct": "1.5b",
}


def random_model_problem(name: str) -> str | None:
    """What is wrong with a `random:<shape>` model id, if anything (checked with the recipe, before anything loads)."""
    if not name.startswith(RANDOM_PREFIX) or name[len(RANDOM_PREFIX) :] in SHAPES:
        return None
    shapes = ", ".join(RANDOM_PREFIX + s for s in SHAPES)
    return (
        f"'model_name_or_path': unknown random model shape {name[len(RANDOM_PREFIX) :]!r} in {name!r}; "
        f"use one of {shapes}, or a hub id or local path"
    )


def shape_from_config(data: dict, where: str) -> ModelShape:
    """A shape from a parsed config.json; a missing key is a `RecipeError` naming the file and the keys."""
    if not all(k in data for k in REQUIRED_KEYS) and isinstance(data.get("text_config"), dict):
        data = data["text_config"]  # vision-language models keep the language model's shape here
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), int)]
    if missing:
        raise RecipeError(
            f"{where} lacks {', '.join(missing)} (or they are not integers): the preflight needs a decoder-only "
            f"model's {', '.join(REQUIRED_KEYS)}; fix the file or point model_name_or_path at the model's folder"
        )
    return ModelShape(
        hidden_size=data["hidden_size"],
        num_hidden_layers=data["num_hidden_layers"],
        num_attention_heads=data["num_attention_heads"],
        num_key_value_heads=data.get("num_key_value_heads") or data["num_attention_heads"],
        intermediate_size=data["intermediate_size"],
        vocab_size=data["vocab_size"],
        tie_word_embeddings=bool(data.get("tie_word_embeddings", False)),
        head_dim=data.get("head_dim"),
        model_type=str(data.get("model_type", "unknown")),
    )


def _read_config(path: Path) -> ModelShape:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RecipeError(f"cannot read the model's {path}: {e}") from e
    if not isinstance(data, dict):
        raise RecipeError(f"the model's {path} is not a JSON object")
    return shape_from_config(data, str(path))


def hub_offline(datasets: bool = False) -> bool:
    """Whether the environment says the hub is out of reach (HF_HUB_OFFLINE, or HF_DATASETS_OFFLINE for datasets)."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets else ("HF_HUB_OFFLINE",)
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in names)


def cached_config(repo_id: str, revision: str | None = None) -> Path | None:
    """config.json of `repo_id` in the local Hugging Face hub cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def find_shape(name: str, revision: str | None = None) -> tuple[ModelShape | None, str]:
    """(the model's shape or None, where it came from or why there is none)."""
    if name.startswith(RANDOM_PREFIX):
        shape = name[len(RANDOM_PREFIX) :]
        if shape not in SHAPES:
            raise RecipeError(
                f"unknown random model shape {shape!r} in model_name_or_path; shapes: {', '.join(SHAPES)}"
            )
        return SHAPES[shape], f"the built-in {shape} shape"
    local = Path(name) / "config.json"
    if local.is_file():
        return _read_config(local), str(local)
    if Path(name).is_dir():
        raise RecipeError(f"model_name_or_path {name!r} is a folder without config.json")
    cached = cached_config(name, revision if revision not in (None, "main") else None)
    if cached is not None:
        return _read_config(cached), "config.json in the local hub cache"
    if name in HUB_MODELS:
        return SHAPES[HUB_MODELS[name]], "the built-in table of shipped models"
    return None, (
        f"{name!r} is not a local folder, not in the local hub cache and not in the built-in table (offline, "
        "nothing is downloaded): download it once (huggingface-cli download) or give its local path"
    )
