"""The one reader of `--key value` overrides, and the one did-you-mean helper and exit-code policy (#23 item 2)."""

import re

from open_grpo.recipe.overrides import parse_overrides
from tests.conftest import ROOT

KNOWN = {"max_steps", "learning_rate", "use_vllm", "report_to", "bf16"}


def test_forms_of_an_override():
    values, problems = parse_overrides(
        [
            "--max_steps",
            "3",
            "--learning-rate=1e-5",
            "--use_vllm",
            "--no_bf16",
            "--report_to",
            "none",
            "--max_steps=4",
        ],
        KNOWN,
    )
    assert problems == []
    assert values == {"max_steps": "4", "learning_rate": "1e-5", "use_vllm": True, "bf16": False, "report_to": "none"}


def test_unknown_keys_and_stray_words_are_all_reported():
    _, problems = parse_overrides(["stray", "--learning_rat", "0.1", "--max_step", "3"], KNOWN)
    assert len(problems) == 3
    assert "['stray'] without a --<key>" in problems[0]
    assert "'--learning_rat'. Did you mean '--learning_rate'?" in problems[1]
    assert "'--max_step'. Did you mean '--max_steps'?" in problems[2]


def test_one_did_you_mean_and_one_exit_code_policy():
    src = ROOT / "src" / "open_grpo"
    users = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.py") if "difflib" in p.read_text())
    assert users == ["errors.py"]
    # every command returns or exits with a named code (errors.EXIT_*)
    commands = [*src.glob("cli/*.py"), src / "train.py", src / "bench" / "driver.py", src / "recipe" / "snapshot.py"]
    literal = re.compile(r"return [0-9]+$|return \S+ if .* else [0-9]+$|sys\.exit\([0-9]+\)", re.M)
    assert [p.name for p in commands if literal.search(p.read_text())] == []
    assert "PREEMPTED_EXIT = 75" not in (src / "trainer" / "preemption.py").read_text()
