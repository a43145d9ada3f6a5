"""No-context QA after an update: answer every question of an article, grade, aggregate.

The paper's metric is macro accuracy: per-article accuracy averaged over articles (the CPT
experiment uses micro accuracy over all questions; both are here).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from seal_runner.domains.knowledge.data import Article
from seal_runner.domains.knowledge.records import Answer
from seal_runner.engines.base import Engine, LoraAdapter, Sampling
from seal_runner.graders.base import GradeItem, Grader
from seal_runner.prompts import qa_prompt
from seal_runner.stats import paired_difference


def answer_questions(
    engine: Engine,
    grader: Grader,
    formatter,
    units: Sequence[tuple[str, Article, LoraAdapter | None]],
    max_tokens: int,
    topic_prefix: bool = True,
) -> list[dict]:
    """Greedy answers for every (condition, article, adapter) unit in one engine call, graded.

    Returns one `Answer` record per question.
    """
    prompts, adapters, meta = [], [], []
    for condition, article, adapter in units:
        for qi, qa in enumerate(article.questions):
            question = f"Topic: {article.title}\n{qa.question}" if topic_prefix else qa.question
            prompts.append(formatter(qa_prompt(qa.question, article.title, topic_prefix)))
            adapters.append(adapter)
            meta.append((condition, article, qi, question, qa.answer))
    completions = engine.generate(prompts, Sampling(temperature=0.0, max_tokens=max_tokens), adapters)
    items = [GradeItem(m[3], m[4], c.text.strip()) for m, c in zip(meta, completions, strict=True)]
    verdicts = grader.grade(items)
    return [
        Answer(
            condition, article.index, article.title, qi, question, gold, item.prediction, verdict.correct
        ).to_json()
        for (condition, article, qi, question, gold), item, verdict in zip(meta, items, verdicts, strict=True)
    ]


def article_accuracies(records: Sequence[dict]) -> dict[tuple[str, int], float]:
    """Accuracy per (condition, article); ungraded answers (correct=None) are left out."""
    hits: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for r in records:
        if r["correct"] is not None:
            hits[(r["condition"], r["article"])].append(bool(r["correct"]))
    return {key: sum(v) / len(v) for key, v in hits.items() if v}


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def condition_accuracies(records: Sequence[dict], condition: str) -> dict[int, float]:
    """Accuracy per article of one condition; an article with no graded answer (e.g. its update
    failed, so it was never asked) is absent."""
    return {article: acc for (cond, article), acc in article_accuracies(records).items() if cond == condition}


def macro_accuracy(records: Sequence[dict], condition: str) -> tuple[float, float, int]:
    """(mean over articles, standard error over articles, number of articles)."""
    per_article = list(condition_accuracies(records, condition).values())
    mean, se = mean_and_se(per_article)
    return mean, se, len(per_article)


def paired_gain(adapted: Mapping[int, float], baseline: Mapping[int, float]) -> dict:
    """A row's gain over its no-update baseline on the articles both measured, with its paired
    bootstrap CI. A failed update leaves its article out of `adapted`; kept in the baseline, the
    gain would compare two different article sets. `baseline` is the baseline's macro accuracy on
    the shared articles; None (and n 0) when they share none."""
    diff = paired_difference(adapted, baseline)
    shared = [acc for article, acc in baseline.items() if article in adapted]
    if not shared:
        return {"baseline": None, "gain": None, "paired_articles": 0}
    return {
        "baseline": sum(shared) / len(shared),
        "gain": diff.mean,
        "gain_ci_low": diff.low,
        "gain_ci_high": diff.high,
        "gain_within_noise": diff.within_noise,
        "paired_articles": diff.n,
    }


def micro_accuracy(records: Sequence[dict], condition: str) -> float:
    graded = [bool(r["correct"]) for r in records if r["condition"] == condition and r["correct"] is not None]
    return sum(graded) / len(graded) if graded else float("nan")


def mean_over_samples(samples: list[dict[int, float]]) -> dict[int, float]:
    """Per article, the mean over the samples whose update succeeded."""
    articles = sorted({a for sample in samples for a in sample})
    return {
        a: sum(values) / len(values)
        for a in articles
        if (values := [sample[a] for sample in samples if a in sample])
    }
