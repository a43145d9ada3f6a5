"""The paper's GPT-4.1 judge: exact grading prompt and yes/no verdict rule, with the reference's defects fixed.

Differences from the reference (method doc section 5): API errors are retried and then raise or
leave the item ungraded (`correct=None`, counted), never silently wrong; a batch is graded
concurrently and identical prompts are sent once; an optional lexical cross-check records agreement.
Two defaults differ from the reference and are switchable (the paper presets switch them): the judge
samples at temperature 0 with at most 16 tokens, where the reference (`grade_with_gpt4` in its
knowledge-incorporation/src/utils.py) passes no sampling parameters and so gets the API's defaults;
and a prediction that tries to instruct the judge is not allowed to talk its way to "yes" (see
`INJECTION_PATTERN`), a guard that overrules some of the reference judge's "yes" verdicts.
"""

from __future__ import annotations

import re
from typing import Any

from seal_runner.choices import OnFailure
from seal_runner.errors import InputError
from seal_runner.graders.base import GradeItem, Verdict
from seal_runner.graders.lexical import LexicalGrader
from seal_runner.openai_api import ChatClient, ChatResult

# Reference wording, verbatim (method doc section 2); sent as a single user message.
JUDGE_PROMPT = (
    "You are a grading assistant. Your job is to determine whether a student's answer correctly answers "
    "the question based solely on the provided gold answer. Do not use any outside knowledge. The student "
    "answer can include additional information, but it must at least fully convey the gold answer and must "
    "not contradict it. Ignore style, phrasing, or extra details that do not affect correctness. Respond "
    "ONLY with 'yes' or 'no'.\n\nQuestion: {question}\nGold answer: {gold}\nStudent answer: {pred}\n"
    "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'."
)
_YES = re.compile(r"\byes\b", re.IGNORECASE)
_NO = re.compile(r"\bno\b", re.IGNORECASE)
# Instruction-like phrases a student answer has no business containing.
INJECTION_PATTERN = re.compile(
    r"\bignore\b|\bprevious\b|\binstructions?\b|\b(?:answer|respond|reply|say)\s+['\"]?yes\b"
    r"|\byou\s+are\b|\bgrading\s+assistant\b",
    re.IGNORECASE,
)


def judge_prompt(item: GradeItem) -> str:
    return JUDGE_PROMPT.format(question=item.question, gold=item.gold, pred=item.prediction.strip())


def is_yes(reply: str) -> bool:
    """The paper's rule: the word "yes" present and the word "no" absent, case-insensitive whole words."""
    return bool(_YES.search(reply)) and not _NO.search(reply)


def looks_like_injection(prediction: str) -> bool:
    return bool(INJECTION_PATTERN.search(prediction))


class LLMJudgeGrader:
    """Grader backed by a chat model. `on_failure="skip"` leaves failed items ungraded instead of raising.

    `temperature` and `max_tokens` default to a deterministic one-word reply (a few tokens leave room
    for "Yes." without paying for prose); None leaves a parameter out of the request, so the API's
    default applies, as in the reference.

    The injection guard (`injection_guard`, on by default) overrules the judge only when three
    signals agree: the judge said yes, the lexical check (the cross-check, or a `contains` grader when
    none is given) says no, and the prediction contains instruction-like phrases. A genuine answer
    that happens to say "you are" keeps its verdict whenever it also contains the gold answer. The
    paper's judge has no such guard, so the paper presets turn it off.
    """

    def __init__(
        self,
        client: ChatClient,
        cross_check: LexicalGrader | None = None,
        on_failure: OnFailure = OnFailure["raise"],
        injection_guard: bool = True,
        temperature: float | None = 0.0,
        max_tokens: int | None = 16,
    ) -> None:
        if on_failure not in OnFailure.values():  # a config's value was checked at composition
            raise ValueError(f"on_failure must be one of {OnFailure.values()}, got {on_failure!r}")
        if temperature is not None and temperature < 0:
            raise InputError(f"grader.temperature={temperature} must be >= 0 (null = the API's default)")
        if max_tokens is not None and max_tokens < 1:
            raise InputError(f"grader.max_tokens={max_tokens} must be >= 1 (null = the API's default)")
        self.client, self.cross_check, self.on_failure = client, cross_check, on_failure
        self.injection_guard = injection_guard
        sampling = {"temperature": temperature, "max_tokens": max_tokens}
        self.sampling: dict[str, Any] = {k: v for k, v in sampling.items() if v is not None}
        self._guard_check = cross_check or LexicalGrader("contains")
        self.counts = dict.fromkeys(
            ("judged", "empty", "ungraded", "compared", "disagreements", "injection_suspected"), 0
        )

    @property
    def stats(self) -> dict[str, Any]:
        """Grader counters plus the client's (requests, retries, cache hits, tokens, cost)."""
        compared = self.counts["compared"]
        rate = self.counts["disagreements"] / compared if compared else 0.0
        return {**self.counts, "disagreement_rate": rate, "client": self.client.stats.as_dict()}

    def usage(self) -> dict[str, float]:
        """`stats` flattened to numbers, for the tracker (see RunContext.log_api_usage)."""
        stats = self.stats
        return {**{k: v for k, v in stats.items() if k != "client"}, **self.client.stats.usage()}

    def grade(self, items: list[GradeItem]) -> list[Verdict]:
        # Each distinct prompt is asked once (empty predictions never are): at temperature 0 the judge
        # is deterministic; at the API's default a repeated prompt shares one sample, where the
        # reference drew one per item.
        unique = list(dict.fromkeys(judge_prompt(item) for item in items if item.prediction.strip()))
        results = (
            self.client.complete_many(
                [[{"role": "user", "content": prompt}] for prompt in unique],
                on_failure=self.on_failure,
                **self.sampling,
            )
            if unique
            else []
        )
        by_prompt = dict(zip(unique, results, strict=True))
        return [
            self._verdict(item, by_prompt[judge_prompt(item)] if item.prediction.strip() else None)
            for item in items
        ]

    def _verdict(self, item: GradeItem, result: ChatResult | None) -> Verdict:
        """`result` is None for an empty prediction: wrong, as in the paper, without asking the judge."""
        detail: dict[str, Any] = {
            "grader": f"llm_judge/{self.client.model}",
            "judge_reply": result.text if result else None,
        }
        lexical = self.cross_check.grade_one(item).correct if self.cross_check else None
        if self.cross_check:
            detail["lexical"] = lexical
        if result is None:
            self.counts["empty"] += 1
            return Verdict(correct=False, detail={**detail, "reason": "empty prediction"})
        if result.text is None:
            self.counts["ungraded"] += 1
            return Verdict(correct=None, detail={**detail, "error": result.error})
        self.counts["judged"] += 1
        judge_says_yes = is_yes(result.text)
        if self.cross_check:  # agreement of the judge itself, before the injection guard
            self.counts["compared"] += 1
            self.counts["disagreements"] += int(judge_says_yes != lexical)
        if self.injection_guard and judge_says_yes and looks_like_injection(item.prediction):
            lexical_ok = lexical if self.cross_check else self._guard_check.grade_one(item).correct
            if not lexical_ok:
                self.counts["injection_suspected"] += 1
                return Verdict(correct=False, detail={**detail, "injection_suspected": True})
        return Verdict(correct=judge_says_yes, detail=detail)
