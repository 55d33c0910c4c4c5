"""The one error type of the pure core: a list of precise problems with the user's input.

Every problem names where it is (`where`), the value found, what is allowed and the fix, so that the
webhook, `hearth render` and the CLI can all print the same sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    where: str
    value: str | None
    allowed: str
    fix: str

    def __str__(self) -> str:
        if self.value is None:  # nothing to quote: missing, or a whole object
            return f"{self.where}: {self.allowed}; fix: {self.fix}"
        return f"{self.where} is {_quote(self.value)}: {self.allowed}; fix: {self.fix}"


def _quote(value: str, limit: int = 80) -> str:
    shown = value if len(value) <= limit else value[: limit - 3] + "..."
    return '"' + shown.replace('"', '\\"') + '"'


MAX_LISTED = 10  # problems spelled out in one message; the rest are counted


class ContractError(ValueError):
    """Input that breaks the user's contract; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ContractError needs at least one problem")
        self.problems = problems
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One problem as it is; several as a count and the first MAX_LISTED (10,000 unknown keys must not
        make a 2 MB denial: kubectl prints it, etcd stores it in an Event, the user reads the first few)."""
        if len(self.problems) == 1:
            return str(self.problems[0])
        listed = " | ".join(str(p) for p in self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        return f"{len(self.problems)} problems: {listed}" + (f" | and {more} more" if more > 0 else "")


class Collector:
    """Gathers problems while a parser walks its input, then raises them all at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, value: str | None, allowed: str, fix: str) -> None:
        self.problems.append(Problem(where, value, allowed, fix))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ContractError(list(self.problems))
