"""The one error a user's configuration raises: `RecipeError`, holding every problem found (exit 2 in the CLI)."""

from __future__ import annotations

import os


class RecipeError(ValueError):
    """A recipe (or its overrides) cannot run. Holds every problem found, one line each."""

    def __init__(self, problems: list[str] | str, source: str | os.PathLike | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = str(source) if source else None
        head = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:  # one mistake, one line
            super().__init__(f"{head}{self.problems[0]}")
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{head}{len(self.problems)} problems:\n{lines}")


class UsageError(RecipeError):
    """A command used wrongly (an unknown flag, a value out of range): exit 2 with the message, like a recipe error."""
