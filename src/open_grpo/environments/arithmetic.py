"""Arithmetic tasks for the tool recipe, written offline as JSON lines ({"problem", "solution"}): expressions of
multi-digit numbers that are hard to get right by hand and easy with a Python tool. Seeded, so a file is reproducible.

    python -m open_grpo.environments.arithmetic data/tool-arithmetic.jsonl            # 2000 tasks, seed 0
    python -m open_grpo.environments.arithmetic data/tool-arithmetic-eval.jsonl --size 200 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

OPERATORS = ("+", "-", "*")


def make_task(rng: random.Random) -> dict:
    """One task: 3 to 5 numbers of 2 to 5 digits joined by + - * (Python's precedence), its exact value as the
    solution."""
    terms = [str(rng.randint(10, 10 ** rng.randint(2, 5) - 1)) for _ in range(rng.randint(3, 5))]
    expression = terms[0]
    for term in terms[1:]:
        expression += f" {rng.choice(OPERATORS)} {term}"
    value = eval(expression, {"__builtins__": {}})  # digits and + - * only: built just above
    return {"problem": f"What is {expression}?", "solution": str(value)}


def make_tasks(size: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [make_task(rng) for _ in range(size)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="the .jsonl file to write")
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = Path(args.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(task) + "\n" for task in make_tasks(args.size, args.seed)))
    print(f"{args.size} tasks -> {path}")


if __name__ == "__main__":
    main()
