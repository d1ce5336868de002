"""Model ids: hub ids and local paths pass through; `random:<shape>` names a random-weight Qwen2 built locally.

`random:tiny` is the demo's and the tests' model; `random:1.5b` (Qwen2.5-1.5B shape, bf16) is for GPU benchmarks
and sanity runs. They are built once and cached under $OPEN_GRPO_CACHE (default ~/.cache/open_grpo).
"""

from __future__ import annotations

import os
from pathlib import Path

from open_grpo.data.tiny_model import save_random_model
from open_grpo.errors import RecipeError
from open_grpo.planning.model_shapes import RANDOM_PREFIX, cached_config, hub_offline, random_model_problem


def cache_dir() -> Path:
    return Path(os.environ.get("OPEN_GRPO_CACHE", Path.home() / ".cache" / "open_grpo"))


def resolve_model(name: str, revision: str | None = None) -> str:
    """The path or hub id that transformers and vLLM load. A hub id the offline hub cannot serve is a `RecipeError`
    (one line, exit 2) instead of transformers' chain of tracebacks."""
    if not name.startswith(RANDOM_PREFIX):
        pinned = None if revision in (None, "main") else revision
        if hub_offline() and not Path(name).expanduser().exists() and cached_config(name, pinned) is None:
            raise RecipeError(
                f"model {name!r} is a hub id but the hub is offline (HF_HUB_OFFLINE=1) and the model is not in the "
                f"local cache: download it where the hub is reachable (`huggingface-cli download {name}`, into the "
                "HF_HOME this machine reads), or set 'model_name_or_path' to a local folder"
            )
        return name
    problem = random_model_problem(name)
    if problem:
        raise RecipeError(problem)
    shape = name[len(RANDOM_PREFIX) :]
    dtype = "float32" if shape == "tiny" else "bfloat16"
    return str(save_random_model(cache_dir() / f"random-qwen2-{shape}", shape=shape, dtype=dtype))
