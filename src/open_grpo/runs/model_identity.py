"""The model a checkpoint belongs to, against the one this launch loads: another model is refused before it loads.

A checkpoint's weights (or adapter) load only into a model of the shape that saved them: resuming an output_dir
after changing `model_name_or_path` to a model of another shape would end in a `load_state_dict` traceback once the
model has loaded. Each COMPLETE marker records the model (`model`: its name, its shape, whether a LoRA adapter was
trained); for a checkpoint without that record the shape comes from its config.json (a full model) or from the base
model named in its adapter_config.json. Another shape, or an adapter against a full model, is refused (exit 2) naming
the ways out. The same shape under another name (a hub id replaced by a local copy of it, as the README's offline
setup advises) is only logged.
"""

from __future__ import annotations

import json
from pathlib import Path

from open_grpo.errors import RecipeError
from open_grpo.planning.model_shapes import find_shape

SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_size",
              "intermediate_size", "vocab_size", "tie_word_embeddings")  # fmt: skip


def _shape(name: str | None, revision: str | None = None) -> dict | None:
    if not name:
        return None
    try:
        shape, _where = find_shape(str(name), revision)
    except RecipeError:  # a folder without config.json: the launch itself says so when it loads the model
        return None
    return None if shape is None else {key: getattr(shape, key) for key in SHAPE_KEYS}


def of_recipe(model_args) -> dict:
    """The model a launch loads from its recipe: name, shape (None where it cannot be seen offline), adapter."""
    name = model_args.model_name_or_path
    return {"name": name, "shape": _shape(name, model_args.model_revision), "adapter": bool(model_args.use_peft)}


def of_checkpoint(path: Path, marker: dict) -> dict:
    """The model a checkpoint was saved from: its marker's record, completed by what its files say (a hub model's
    shape is unknown offline before its first download)."""
    recorded = marker.get("model") if isinstance(marker.get("model"), dict) else {}
    if recorded.get("shape"):
        return recorded
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        try:
            base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        except (OSError, ValueError, AttributeError):
            base = None
        return {"name": base, "adapter": True, **recorded, "shape": _shape(base)}
    return {"name": None, "adapter": False, **recorded, "shape": _shape(str(path))}


def of_weights(path: Path, model: dict, saved: dict | None = None) -> dict:
    """A run started from weights (`resume: weights`) trains the model in `path`, whatever model_name_or_path says.
    `saved`: that model's identity, read before it moved to `path`."""
    saved = saved or of_checkpoint(path, {})
    return {**model, "name": str(path), "shape": saved["shape"]}


def _describe(shape: dict) -> str:
    return (f"{shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, {shape['num_attention_heads']} "
            f"heads, intermediate {shape['intermediate_size']}, vocab {shape['vocab_size']}")  # fmt: skip


def problem(path: Path, saved: dict, now: dict) -> str | None:
    """Why `path` cannot be resumed with the model `now` (None: it can). The message names the ways out."""
    kinds = {True: "a LoRA adapter", False: "a full model"}
    differences = []
    if saved.get("adapter") is not None and bool(saved["adapter"]) != now["adapter"]:
        differences.append(f"it holds {kinds[bool(saved['adapter'])]}, this launch trains {kinds[now['adapter']]}")
    if saved.get("shape") and now.get("shape") and saved["shape"] != now["shape"]:
        differences.append(f"its model has {_describe(saved['shape'])}; {now['name']} has {_describe(now['shape'])}")
    if not differences:
        return None
    was = f" ({saved['name']})" if saved.get("name") else ""
    ways = [
        "give this launch another output_dir (--output_dir DIR)",
        f"start a new run here with --resume never (this run moves to {path.parent / 'previous'}/)",
    ]
    if not saved.get("adapter"):
        ways.append("start a new run from this checkpoint's own model with --resume weights")
    if saved.get("name"):
        ways.append(f"or continue this run with the model it was saved from: model_name_or_path: {saved['name']}")
    return (f"{path} was saved from another model than this launch's{was}: {'; '.join(differences)}. Its weights "
            f"would not load. Ways out: {'; '.join(ways)}")  # fmt: skip


def renamed(saved: dict, now: dict) -> str | None:
    """A line for the log when the checkpoint's model had another name (a local copy of a hub model, say)."""
    if not saved.get("name") or saved["name"] == now["name"]:
        return None
    shapes = "the same shape" if saved.get("shape") and saved["shape"] == now.get("shape") else "shapes not known here"
    return (f"model_name_or_path is {now['name']}, the checkpoint was saved from {saved['name']} ({shapes}): "
            "continuing with the checkpoint's weights")  # fmt: skip
