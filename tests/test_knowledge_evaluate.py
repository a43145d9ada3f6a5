"""Table 2 gains on hand-made graded answers: a row is compared with its no-update baseline on the
articles both measured, so a failed update cannot move the gain by changing the article set."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from seal_runner.domains.knowledge.evaluate import condition_accuracies, macro_accuracy, paired_gain


def graded(condition: str, per_article: dict[int, list[bool]]) -> list[dict]:
    return [
        {"condition": condition, "article": article, "correct": correct}
        for article, answers in per_article.items()
        for correct in answers
    ]


# No update: articles 0..3 at 0.5, 0.0, 1.0, 0.5. Article 2's update failed, so the adapted row
# has 0, 1 and 3 only, at 1.0, 0.5, 0.5.
BASE = {0: [True, False], 1: [False, False], 2: [True, True], 3: [False, True]}
ADAPTED = {0: [True, True], 1: [True, False], 3: [True, False]}
RESULTS = (
    graded("base", BASE)
    + graded("selfedit", ADAPTED)
    + [
        {"condition": "selfedit", "article": 1, "correct": None}  # ungraded: left out, not wrong
    ]
)


def test_condition_accuracies_per_article():
    assert condition_accuracies(RESULTS, "base") == {0: 0.5, 1: 0.0, 2: 1.0, 3: 0.5}
    assert condition_accuracies(RESULTS, "selfedit") == {0: 1.0, 1: 0.5, 3: 0.5}
    assert condition_accuracies(RESULTS, "passage") == {}


def test_failed_update_drops_the_article_from_both_sides():
    """Unpaired, the gain would be 2/3 (adapted over 0, 1, 3) - 1/2 (baseline over 0..3) = +1/6.
    Paired on 0, 1, 3: baseline (0.5 + 0.0 + 0.5) / 3 = 1/3, differences 0.5, 0.5, 0.0 → +1/3."""
    gain = paired_gain(condition_accuracies(RESULTS, "selfedit"), condition_accuracies(RESULTS, "base"))
    assert gain["paired_articles"] == 3
    assert gain["baseline"] == pytest.approx(1 / 3)
    assert gain["gain"] == pytest.approx(1 / 3)
    assert gain["gain"] == pytest.approx(macro_accuracy(RESULTS, "selfedit")[0] - gain["baseline"])
    # Every resampled mean lies in [0, 0.5]; all three draws hit the 0.0 article with chance 1/27 > 2.5%,
    # so the lower bound is 0 and the gain is within noise.
    assert gain["gain_ci_low"] == pytest.approx(0.0) and gain["gain_ci_high"] <= 0.5
    assert gain["gain_within_noise"] is True


def test_no_failure_gives_the_plain_difference_and_the_baseline_unchanged():
    """With every article measured the baseline is exactly the baseline row's macro accuracy."""
    adapted = {0: 1.0, 1: 0.5, 2: 1.0, 3: 0.0}
    base = condition_accuracies(RESULTS, "base")
    gain = paired_gain(adapted, base)
    assert gain["baseline"] == macro_accuracy(RESULTS, "base")[0] == 0.5
    assert gain["gain"] == pytest.approx(0.625 - 0.5) and gain["paired_articles"] == 4


def test_no_shared_article_has_no_gain():
    assert paired_gain({}, {0: 0.5}) == {"baseline": None, "gain": None, "paired_articles": 0}


def test_summary_counts_failed_updates_per_row():
    """stage=evaluate's summary: the failed update of article 2 is counted on its row only, and the
    row's baseline and gain are the paired ones."""
    from seal_runner.domains.knowledge.data import QA, Article
    from seal_runner.domains.knowledge.table2 import Row, format_table, summarise

    articles = [Article(i, f"T{i}", "C", (QA("q", "a"), QA("q2", "a2"))) for i in range(4)]
    rows = [
        Row("base", "base model (no update)", None, "m", "base"),
        Row("selfedit", "self-edit", None, "m", "base"),
    ]
    updates = {
        f"selfedit-{i:04d}": {
            "key": f"selfedit-{i:04d}",
            "adapter": None if i == 2 else f"a{i}",
            "seconds": 1.0,
        }
        | ({"failed": "oom"} if i == 2 else {})
        for i in range(4)
    }
    cfg = OmegaConf.create(
        {
            "experiment_name": "x",
            "model": {"name_or_path": "m"},
            "seed": 0,
            "lora": {"mode": "multi"},
            "evaluate": {"samples": 1, "likelihood": False, "compare": []},
        }
    )
    summary = summarise(cfg, rows, articles, {}, updates, RESULTS, {}, {}, 0.0)
    base, selfedit = summary["conditions"]["base"], summary["conditions"]["selfedit"]
    assert "failed_updates" not in base and base["gain"] is None
    assert selfedit["failed_updates"] == 1 and summary["inner_failures"] == 1
    assert selfedit["articles"] == 3 and selfedit["baseline"] == pytest.approx(1 / 3)
    assert selfedit["gain"] == pytest.approx(1 / 3)
    assert "failed" in format_table(summary)
