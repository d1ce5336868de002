"""The recipe layer and the light commands import no torch; features depend on the recipe layer, never the reverse."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

RECIPE_LAYER = ROOT / "src" / "open_grpo" / "recipe"
# What the recipe layer may import from open_grpo: leaves that import nothing above them (the error policy, the table
# of model shapes, the reward registry it checks reward specs with, the sandbox settings' and the tool keys' own
# checks) and itself.
ALLOWED = {"errors", "planning.model_shapes", "rewards.registry", "sandbox.recipe", "environments.specs"}


@pytest.mark.parametrize(
    "command",
    [["--help"], ["recipes"], ["rewards"], ["check", "qwen-math-1.5b"], ["check", "qwen-math-7b-lora", "--json"],
     ["check", "demo", "--loss_type", "grpoo"]],
    ids=" ".join,
)  # fmt: skip
def test_light_commands_import_no_torch(command):
    code = (
        "import sys\nfrom open_grpo.cli import main\n"
        f"try:\n    code = main({command!r})\nexcept SystemExit as e:\n    code = e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    assert out.splitlines()[-1].startswith("NO-TORCH"), out[-2000:]


def test_recipe_parsing_imports_no_torch():
    code = (
        "import sys\nfrom open_grpo.recipe import load_recipe\n"
        "for name in ('demo', 'qwen-math-1.5b', 'qwen-math-7b-lora'):\n    load_recipe(name, world_size=8)\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "NO-TORCH", out.stderr[-2000:]


def _open_grpo_imports(path) -> set[str]:
    """The open_grpo modules a module of the recipe layer imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ["recipe"][: 2 - node.level]  # level 1: open_grpo.recipe, level 2: open_grpo
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {f"{module}.{a.name}".strip(".") if not node.module else module for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("open_grpo"):
            names.add(node.module.removeprefix("open_grpo."))
    return names


def test_the_recipe_layer_imports_no_feature():
    for path in sorted(RECIPE_LAYER.glob("*.py")):
        if path.name == "snapshot.py":  # the maintainer's command that reads the installed libraries
            continue
        outside = {m for m in _open_grpo_imports(path) if not m.startswith("recipe")} - ALLOWED
        assert not outside, f"{path.name} imports {outside}: features depend on the recipe layer, not the reverse"
