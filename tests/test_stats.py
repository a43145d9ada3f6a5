"""Bootstrap intervals and paired differences (seal_runner/stats.py), and the ReSTEM report built on
them (seal_runner/domains/knowledge/report.py)."""

from __future__ import annotations

import math

import pytest

from seal_runner.domains.knowledge.report import comparisons, plot_round_curve, plot_table2, table2_rows
from seal_runner.stats import bootstrap_mean_ci, paired_difference


def test_bootstrap_interval_contains_mean_and_narrows_with_more_data():
    small = [0.0, 1.0] * 5
    large = [0.0, 1.0] * 200
    m1, lo1, hi1 = bootstrap_mean_ci(small)
    m2, lo2, hi2 = bootstrap_mean_ci(large)
    assert m1 == m2 == 0.5
    assert lo1 < 0.5 < hi1 and lo2 < 0.5 < hi2
    assert hi2 - lo2 < (hi1 - lo1) / 4
    # A 95% interval of a mean of 400 fair coin flips: about +-0.049.
    assert hi2 - lo2 == pytest.approx(2 * 1.96 * 0.5 / math.sqrt(400), rel=0.15)


def test_constant_values_have_a_zero_width_interval_and_empty_is_nan():
    assert bootstrap_mean_ci([0.4] * 7) == pytest.approx((0.4, 0.4, 0.4))
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))


def test_paired_difference_sees_a_consistent_gain_an_unpaired_spread_would_hide():
    # Articles differ widely (0.0 .. 0.9), but b beats a by exactly 0.1 on every one.
    a = {i: i / 10 for i in range(10)}
    b = {i: i / 10 + 0.1 for i in range(10)}
    d = paired_difference(b, a)
    assert d.mean == pytest.approx(0.1) and d.low == pytest.approx(0.1) and d.high == pytest.approx(0.1)
    assert not d.within_noise and d.n == 10
    assert "+10.0 pts" in d.describe() and "within noise" not in d.describe()


def test_paired_difference_uses_only_shared_units_and_flags_noise():
    a = {0: 1.0, 1: 0.0, 2: 1.0, 3: 0.0, 4: 0.5}
    b = {0: 0.0, 1: 1.0, 2: 1.0, 3: 0.0}  # article 4 failed on this side: left out of both
    d = paired_difference(a, b)
    assert d.n == 4 and d.mean == pytest.approx(0.0)
    assert d.within_noise and d.describe().endswith("(within noise)")
    assert d.as_dict()["within_noise"] is True


def _heldout(selfedit: dict[int, float], passage: dict[int, float] | None = None) -> dict:
    def cell(values):
        mean, low, high = bootstrap_mean_ci(list(values.values()))
        return {"macro_accuracy": mean, "se": 0.0, "ci_low": low, "ci_high": high, "articles": len(values)}

    per_article = {"base": {k: 0.0 for k in selfedit}, "selfedit": selfedit}
    heldout = {"base": cell(per_article["base"]), "selfedit": cell(selfedit), "mean_selfedit_tokens": 90.0}
    if passage is not None:
        per_article["passage"] = passage
        heldout["passage"] = cell(passage)
    # as read back from summary.json: article keys are strings
    heldout["per_article"] = {c: {str(k): v for k, v in p.items()} for c, p in per_article.items()}
    return heldout


def _rounds() -> list[dict]:
    start = {i: 0.2 for i in range(12)}
    better = {i: 0.6 for i in range(12)}
    passage = {i: 0.4 for i in range(12)}
    rewards = {"mean_reward": 0.3, "mean_best_of_k": 0.5, "mean_baseline": 0.0}
    return [
        {
            "round": 0,
            "reward": "inner",
            "heldout": _heldout(start, passage),
            "rewards": rewards,
            "chosen": 12,
        },
        {"round": 1, "reward": "inner", "heldout": _heldout(better, passage)},
    ]


def test_comparisons_are_paired_per_article_between_rounds_and_against_the_passage():
    out = comparisons(_rounds())
    assert out["round_1_vs_round_0"]["mean"] == pytest.approx(0.4)
    assert out["round_1_vs_round_0"]["within_noise"] is False
    assert out["round_0_selfedit_vs_base_passage"]["mean"] == pytest.approx(-0.2)
    assert out["round_1_selfedit_vs_base_passage"]["mean"] == pytest.approx(0.2)
    assert out["final_selfedit_vs_own_passage"]["mean"] == pytest.approx(0.2)
    assert "noise_floor" not in out


def test_table2_rows_and_plots(tmp_path):
    rounds = _rounds()
    rows = table2_rows(rounds)
    assert [r["row"] for r in rows] == [
        "base model (no update)",
        "train on passage",
        "passage + base-model self-edit",
        "passage + self-edit (policy after round 1)",
    ]
    assert rows[-1]["macro_accuracy"] == pytest.approx(0.6)
    summary = {"experiment": "t", "heldout_articles": 12, "rounds": rounds}
    for path in (
        plot_round_curve(summary, tmp_path / "curve.png"),
        plot_table2(rows, tmp_path / "t2.png", "t"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
