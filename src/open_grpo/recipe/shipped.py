"""Files that ship with the package: `recipes/` and `accelerate_configs/`. In a checkout they are the top-level folders;
an installed package carries a copy. A folder of the same name in the working directory comes first, so a user's
own recipes and configs win over the shipped ones."""

from __future__ import annotations

import os
from pathlib import Path

from open_grpo.errors import RecipeError, did_you_mean

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the open_grpo package
RECIPES = "recipes"
ACCELERATE_CONFIGS = "accelerate_configs"


def search_dirs(kind: str) -> list[Path]:
    """Existing folders of `kind`, in lookup order: $OPEN_GRPO_RECIPES (recipes only), ./<kind>, the package's copy."""
    dirs = [Path(p) for p in os.environ.get("OPEN_GRPO_RECIPES", "").split(os.pathsep) if p] if kind == RECIPES else []
    dirs += [Path.cwd() / kind, PACKAGE_DIR / kind]
    seen, unique = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            unique.append(d)
    return unique


def names(kind: str) -> list[str]:
    return sorted({p.stem for d in search_dirs(kind) for p in d.glob("*.yaml")})


def find(kind: str, name: str) -> Path | None:
    """The first `<name>.yaml` of `kind`, as an absolute path; None if there is none."""
    for d in search_dirs(kind):
        if (d / f"{name}.yaml").is_file():
            return (d / f"{name}.yaml").resolve()
    return None


def unknown_name(kind: str, name: str) -> str:
    """A message for a name that `find` did not find: the close match and the available names."""
    available = names(kind)
    hint = did_you_mean(name, available)
    label = "recipe" if kind == RECIPES else "accelerate config"
    return f"unknown {label} {str(name)!r}.{hint} Available: {', '.join(available) or '(none found)'}"


def accelerate_config(name: str) -> Path:
    """`zero3` -> the absolute path of accelerate_configs/zero3.yaml (a path to a .yaml file passes through)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name).resolve()
    found = find(ACCELERATE_CONFIGS, name)
    if found is None:
        raise RecipeError(unknown_name(ACCELERATE_CONFIGS, name))
    return found
