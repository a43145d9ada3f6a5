"""The grader interface every grader (lexical, LLM judge) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GradeItem:
    """One answer to grade. `question` carries the `Topic:` prefix exactly as the model saw it."""

    question: str
    gold: str
    prediction: str


@dataclass
class Verdict:
    """`correct` is None when the item could not be graded (counted, never silently wrong)."""

    correct: bool | None
    detail: dict = field(default_factory=dict)


class Grader(Protocol):
    """Grades a batch at once so implementations can batch, cache and parallelise."""

    def grade(self, items: list[GradeItem]) -> list[Verdict]: ...
