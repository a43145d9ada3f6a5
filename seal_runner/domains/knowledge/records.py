"""The knowledge domain's record kinds as stored in its JSONL files, and the key each resumes by.

A record is written as its fields in order (`asdict`), so the JSON matches byte for byte what runs
made before these types wrote, and their run directories resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SelfEdit:
    """One self-edit of an article (self_edits*.jsonl). `status`: ok | truncated | empty when
    sampled, ok | missing when read from a file. When a cut last line was dropped
    (`domain.drop_cut_line`), `raw_text` keeps what the engine returned."""

    article: int
    sample: int
    title: str
    prompt: str | None
    text: str
    num_tokens: int | None
    status: str
    sequences: list[str]
    cut_line_dropped: bool = False
    raw_text: str | None = None

    def to_json(self) -> dict:
        record = asdict(self)
        if not self.cut_line_dropped:  # stored only when a line was dropped
            del record["cut_line_dropped"], record["raw_text"]
        return record


def selfedit_key(record: dict) -> tuple[int, int]:
    return record["article"], record["sample"]


@dataclass(frozen=True)
class Answer:
    """One graded no-context answer to a question (results.jsonl, rewards_qa.jsonl, probe.jsonl);
    `correct` is None when the grader gave no verdict."""

    condition: str
    article: int
    title: str
    question_index: int
    question: str
    gold: str
    prediction: str
    correct: bool | None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AnswerLogprob:
    """One gold answer's mean log-probability per token (answer_logprobs.jsonl, rewards_logprob.jsonl)."""

    condition: str
    article: int
    question_index: int
    logprob: float

    def to_json(self) -> dict:
        return asdict(self)


def answer_key(record: dict) -> tuple[str, int, int]:
    """The key of an `Answer` and of an `AnswerLogprob`: one per (condition, article, question)."""
    return record["condition"], record["article"], record["question_index"]
