"""Offline grader: SQuAD-style normalised exact match, gold containment or token F1.

The paper grades with GPT-4.1; this grader is the offline default so that runs, tests and CI need
no API key. `rule` picks the verdict: `exact` (normalised strings equal), `contains` (the
normalised gold occurs as a whole-word span of the normalised prediction, the closest lexical
match to the judge's "must at least fully convey the gold answer") or `f1` (token F1 ≥ threshold).
"""

from __future__ import annotations

import re
import string
from collections import Counter

from seal_runner.choices import Choice
from seal_runner.graders.base import GradeItem, Verdict

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (the SQuAD evaluation rule)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def contains_gold(prediction: str, gold: str) -> bool:
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    return bool(ref) and f" {ref} " in f" {pred} "


class LexicalRule(Choice):
    """`grader.rule`: the verdicts above."""

    exact = "exact"
    contains = "contains"
    f1 = "f1"


class LexicalGrader:
    """Deterministic grader; an empty prediction is wrong, as in the paper."""

    def __init__(self, rule: LexicalRule | str = LexicalRule.contains, f1_threshold: float = 0.5) -> None:
        # A config's rule was checked at composition; scripts pass plain strings.
        if rule not in LexicalRule.values():
            raise ValueError(f"grader.rule must be one of {LexicalRule.values()}, got {rule!r}")
        self.rule, self.f1_threshold = LexicalRule(rule), f1_threshold

    def grade_one(self, item: GradeItem) -> Verdict:
        pred = item.prediction.strip()
        scores = {
            "exact": normalize_answer(pred) == normalize_answer(item.gold) if pred else False,
            "contains": contains_gold(pred, item.gold) if pred else False,
            "f1": token_f1(pred, item.gold) if pred else 0.0,
        }
        verdict = {
            LexicalRule.exact: scores["exact"],
            LexicalRule.contains: scores["contains"],
            LexicalRule.f1: scores["f1"] >= self.f1_threshold,
        }[self.rule]
        return Verdict(correct=bool(verdict), detail={"grader": f"lexical/{self.rule}", **scores})

    def grade(self, items: list[GradeItem]) -> list[Verdict]:
        return [self.grade_one(item) for item in items]
