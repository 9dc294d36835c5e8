"""What became of the events of one write."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from amoskys.telemetry.validate import Problem

MAX_PROBLEMS = 5  # details kept per write; every problem is still counted


@dataclass
class WriteResult:
    """How many events ended in each outcome, and the first few problems in words.

    Outcomes are ``stored``, ``duplicate`` and ``rejected:<reason>``; every event
    offered ends in exactly one.
    """

    outcomes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.outcomes["stored"]

    @property
    def duplicate(self) -> int:
        return self.outcomes["duplicate"]

    @property
    def rejected(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome.startswith("rejected:"))

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def count(self, outcome: str, events: int) -> None:
        if events:
            self.outcomes[outcome] += events

    def copy(self) -> WriteResult:
        return WriteResult(Counter(self.outcomes), list(self.problems))

    def add(self, other: WriteResult) -> None:
        """Count another write's outcomes into this one."""
        self.outcomes.update(other.outcomes)
        self.problems.extend(other.problems[: MAX_PROBLEMS - len(self.problems)])

    def reject(self, problem: Problem, events: int = 1) -> None:
        self.count(f"rejected:{problem.reason}", events)
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem.detail)
