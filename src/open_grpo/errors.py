"""How a configuration problem is told: `RecipeError` (every problem found, one line each), `UsageError`, the one
did-you-mean helper, and the exit codes every command uses.

Exit codes (the `open-grpo` commands, `python -m open_grpo.train`, the job scripts):
    EXIT_OK 0               done
    EXIT_CHECK_FAILED 1     a check failed: the plan does not fit the layout or the cards, a layout is refused
    EXIT_CONFIG_ERROR 2     a configuration, data or usage error (RecipeError, UsageError), the message on stderr
    EXIT_PREEMPTED 75       stopped on request after saving a checkpoint: requeue the job (sysexits.h EX_TEMPFAIL)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CONFIG_ERROR = 2
EXIT_PREEMPTED = 75


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


def did_you_mean(word: str, candidates: Iterable[str], quote: str = "'{}'") -> str:
    """' Did you mean 'x'?' for the closest candidate to a mistyped `word`, or '' when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return f" Did you mean {quote.format(close[0])}?" if close else ""
