"""ReSTEM selection rules on hand-made reward tables."""

from __future__ import annotations

import math

import pytest

from seal_runner.selection import SelectionRule, reward_stats, select


def table(rows: dict[int, tuple[float, list[float]]]) -> list[dict]:
    """{context: (baseline, [reward per sample])} → candidate dicts, deliberately not in order."""
    out = [
        {"context": ctx, "sample": s, "reward": r, "baseline": base, "completion": f"c{ctx}s{s}"}
        for ctx, (base, rewards) in rows.items()
        for s, r in enumerate(rewards)
    ]
    return out[::-1]


TABLE = table(
    {
        0: (0.2, [0.4, 0.8, 0.8, 0.1]),  # tie at the top: sample 1 wins
        1: (0.5, [0.5, 0.3, 0.5, 0.2]),  # best equals the baseline: no positive gain
        2: (0.6, [0.0, 0.2, 0.4, 0.0]),  # best below the baseline
        3: (0.4, [0.6, 0.3, 0.0, 0.0]),  # gain 0.6 - 0.4 is 0.19999999999999996 in floats
    }
)


def keys(selected: list[dict]) -> list[tuple[int, int]]:
    return [(c["context"], c["sample"]) for c in selected]


def test_best_of_k_one_per_context_ties_to_earliest():
    chosen = select(TABLE, "best_of_k")
    assert keys(chosen) == [(0, 1), (1, 0), (2, 2), (3, 0)]
    assert all(any(c is d for d in TABLE) for c in chosen)  # the caller's dicts, not copies
    assert chosen[0]["completion"] == "c0s1"


def test_best_of_k_tie_within_float_noise():
    a, b = (0.1 + 0.2 + 0.3) / 3, (0.3 + 0.2 + 0.1) / 3
    assert a != b
    rows = [
        {"context": 7, "sample": 2, "reward": max(a, b), "baseline": 0.0},
        {"context": 7, "sample": 0, "reward": min(a, b), "baseline": 0.0},
    ]
    assert keys(select(rows, "best_of_k")) == [(7, 0)]


def test_positive_gain_drops_contexts_without_gain():
    assert keys(select(TABLE, "positive_gain")) == [(0, 1), (3, 0)]


def test_threshold_edge_is_inclusive():
    assert keys(select(TABLE, "threshold", threshold=0.2)) == [(0, 1), (3, 0)]
    assert keys(select(TABLE, "threshold", threshold=0.2000001)) == [(0, 1)]
    # threshold 0 keeps the zero-gain winner that positive_gain drops
    assert keys(select(TABLE, "threshold", threshold=0.0)) == [(0, 1), (1, 0), (3, 0)]
    assert keys(select(TABLE, "threshold", threshold=-1.0)) == keys(select(TABLE, "best_of_k"))


def test_all_positive_keeps_every_solved_pair():
    arc = table({10: (0.0, [1.0, 0.0, 1.0, 1.0]), 11: (0.0, [0.0, 0.0]), 12: (0.0, [0.0, 1.0])})
    chosen = select(arc, "all_positive")
    assert keys(chosen) == [(10, 0), (10, 2), (10, 3), (12, 1)]
    no_baseline = [{k: v for k, v in c.items() if k != "baseline"} for c in arc]
    assert len(select(no_baseline, "all_positive")) == 4
    assert len(select(no_baseline, "best_of_k")) == 3


def test_unknown_rule_lists_rules():
    with pytest.raises(ValueError) as err:
        select(TABLE, "top_p")
    assert all(rule in str(err.value) for rule in SelectionRule.values())


def test_bad_tables_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        select(TABLE + TABLE[:1], "best_of_k")
    with pytest.raises(ValueError, match="non-finite"):
        select([{"context": 0, "sample": 0, "reward": math.nan, "baseline": 0.0}], "best_of_k")
    with pytest.raises(ValueError, match="inconsistent baselines"):
        select(
            [
                {"context": 0, "sample": 0, "reward": 0.1, "baseline": 0.0},
                {"context": 0, "sample": 1, "reward": 0.1, "baseline": 0.5},
            ],
            "best_of_k",
        )
    with pytest.raises(ValueError, match="needs a baseline"):
        select([{"context": 0, "sample": 0, "reward": 0.1}], "positive_gain")
    assert select([], "best_of_k") == []


def test_reward_stats():
    stats = reward_stats(TABLE)
    assert stats["count"] == 16 and stats["contexts"] == 4
    assert stats["mean_reward"] == pytest.approx((0.525 + 0.375 + 0.15 + 0.225) / 4)
    assert stats["mean_best_of_k"] == pytest.approx((0.8 + 0.5 + 0.4 + 0.6) / 4)
    assert stats["mean_baseline"] == pytest.approx((0.2 + 0.5 + 0.6 + 0.4) / 4)
    assert stats["mean_gain"] == pytest.approx(stats["mean_reward"] - stats["mean_baseline"])
    # sample std (ddof 1, the reference's) of [0.5, 0.3, 0.5, 0.2]: mean 0.375, squared deviations
    # sum to 0.0675, / 3 = 0.0225, sqrt = 0.15; one-candidate contexts are skipped
    two = table({0: (0.0, [0.5, 0.3, 0.5, 0.2]), 1: (0.0, [0.9])})
    assert reward_stats(two)["within_context_std"] == pytest.approx(0.15)
    empty = reward_stats([])
    assert empty["count"] == 0 and empty["mean_reward"] is None and empty["within_context_std"] is None
    assert empty["run_to_run_std"] is None


def test_within_context_std_averages_contexts():
    """[0.2, 0.4] has sample std sqrt(0.02) (squared deviations 0.01 + 0.01, / 1); [0.1, 0.1, 0.4]
    has mean 0.2, squared deviations 0.01 + 0.01 + 0.04 = 0.06, / 2 = 0.03 → sqrt(0.03)."""
    stats = reward_stats(table({0: (0.0, [0.2, 0.4]), 1: (0.0, [0.1, 0.1, 0.4])}))
    assert stats["within_context_std"] == pytest.approx((math.sqrt(0.02) + math.sqrt(0.03)) / 2)


def test_run_to_run_std_over_inner_seeds():
    """Per self-edit, the sample std of its inner runs' adapted accuracies, then the mean over
    self-edits: [0.2, 0.4, 0.6] → 0.2 (squared deviations 0.04 + 0 + 0.04, / 2 = 0.04);
    [0.5, None, 0.7] → the failed run is left out, [0.5, 0.7] → sqrt(0.02); [0.3, None, None] and
    the proxy reward's [] have one run or none and no std. Mean: (0.2 + sqrt(0.02)) / 2."""
    rows = [
        {"context": 0, "sample": 0, "reward": 0.4, "baseline": 0.1, "inner_runs": [0.2, 0.4, 0.6]},
        {"context": 0, "sample": 1, "reward": 0.6, "baseline": 0.1, "inner_runs": [0.5, None, 0.7]},
        {"context": 1, "sample": 0, "reward": 0.3, "baseline": 0.2, "inner_runs": [0.3, None, None]},
        {"context": 1, "sample": 1, "reward": 0.0, "baseline": 0.2, "inner_runs": []},
    ]
    assert reward_stats(rows)["run_to_run_std"] == pytest.approx((0.2 + math.sqrt(0.02)) / 2)


def test_run_to_run_std_needs_two_inner_seeds():
    """restem.inner_seeds=1 (one run per self-edit) or the proxy reward: undefined, not 0."""
    rows = [
        {"context": 0, "sample": s, "reward": r, "baseline": 0.0, "inner_runs": [r]}
        for s, r in enumerate((0.1, 0.3))
    ]
    assert reward_stats(rows)["run_to_run_std"] is None
    assert reward_stats(TABLE)["run_to_run_std"] is None  # no inner_runs recorded at all
