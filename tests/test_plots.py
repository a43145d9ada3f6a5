"""The stage pictures from synthetic summaries shaped exactly as the stages write them: stage=evaluate's
Table 2 bars for knowledge and Table 1 bars for ARC, each a PNG in the run dir that the printed table names.
No model runs; the full stages check the same files end to end (tests/test_table2.py, test_e2e.py,
test_arc_table1.py)."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from seal_runner.domains.arc import table1
from seal_runner.domains.arc.domain import condition_summary
from seal_runner.domains.knowledge import table2
from seal_runner.domains.knowledge.data import QA, Article

PNG = b"\x89PNG\r\n\x1a\n"


def graded(condition: str, per_article: dict[int, list[bool]]) -> list[dict]:
    return [
        {"condition": condition, "article": a, "correct": c}
        for a, answers in per_article.items()
        for c in answers
    ]


def evaluate_summary() -> dict:
    """stage=evaluate's summary through its own `summarise`: base, passage and a self-edit row over
    four articles, the self-edit's update of article 2 failed (so that row has 3 articles)."""
    articles = [Article(i, f"T{i}", "C", (QA("q", "a"), QA("q2", "a2"))) for i in range(4)]
    rows = [
        table2.Row("base", "base model (no update)", None, "m", "base"),
        table2.Row("passage", "train on passage", None, "m", "base"),
        table2.Row("selfedit", "passage + self-edit", None, "m", "base"),
    ]
    updates = {
        f"{row}-{i:04d}": {"key": f"{row}-{i:04d}", "adapter": f"a{i}", "seconds": 1.0}
        for row in ("passage", "selfedit")
        for i in range(4)
    }
    updates["selfedit-0002"] = {"key": "selfedit-0002", "adapter": None, "seconds": 1.0, "failed": "oom"}
    results = (
        graded("base", {0: [True, False], 1: [False, False], 2: [True, True], 3: [False, True]})
        + graded("passage", {0: [True, True], 1: [False, True], 2: [True, True], 3: [False, False]})
        + graded("selfedit", {0: [True, True], 1: [True, False], 3: [True, False]})
    )
    cfg = OmegaConf.create(
        {
            "experiment_name": "demo_table2_cpu",
            "model": {"name_or_path": "m"},
            "seed": 0,
            "lora": {"mode": "multi"},
            "evaluate": {"samples": 1, "likelihood": False, "compare": [["selfedit", "passage"]]},
        }
    )
    return table2.summarise(cfg, rows, articles, {}, updates, results, {}, {}, 0.0)


def test_evaluate_rows_carry_a_bootstrap_ci():
    conditions = evaluate_summary()["conditions"]
    for c in conditions.values():
        assert c["ci_low"] <= c["macro_accuracy"] <= c["ci_high"]
    assert conditions["passage"]["macro_accuracy"] == pytest.approx(0.625)
    assert conditions["selfedit"]["articles"] == 3


def test_evaluate_table2_png_is_named_in_the_table(tmp_path):
    summary = evaluate_summary()
    assert "plots:" not in table2.format_table(summary)  # summarise alone has drawn nothing
    summary["plots"] = table2.plots(summary, tmp_path)
    png = tmp_path / "table2.png"
    assert summary["plots"] == {"table2": str(png)}
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000
    assert table2.format_table(summary).splitlines()[-1].endswith(f"plots: {png}")


def test_evaluate_plot_draws_a_row_without_any_answer(tmp_path):
    """A row whose every update failed has NaN accuracy and CI (as summary.json records it); the
    picture is still drawn, with an empty bar for it."""
    summary = evaluate_summary()
    summary["conditions"]["file"] = {
        **summary["conditions"]["base"],
        "label": "passage + file self-edit",
        "macro_accuracy": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "articles": 0,
    }
    table2.plots(summary, tmp_path)
    assert (tmp_path / "table2.png").read_bytes()[:8] == PNG


def arc_condition(tmp_path, name: str, solved: dict[str, list[bool]]) -> dict:
    """One ARC condition's summary through `condition_summary`: `solved[task]` lists each of the
    task's self-edit pairs; a pair absent from the list was never scored (counted unsolved)."""
    tasks = list(solved)
    samples = max(len(v) for v in solved.values())
    results = {
        f"{t}/s{s}": {"task": t, "solved": ok, "queries": 1, "parsed": 1, "correct_answers": int(ok)}
        for t, pairs in solved.items()
        for s, ok in enumerate(pairs)
    }
    return condition_summary(results, {}, {}, tasks, len(tasks) * samples, tmp_path / name)


def test_arc_success_rate_ci_bootstraps_over_tasks(tmp_path):
    """Two self-edits per task over 4 tasks: task rates 1, 0.5, 0 (one pair unscored) and 0."""
    c = arc_condition(
        tmp_path, "ttt_base", {"a": [True, True], "b": [True, False], "c": [False], "d": [False, False]}
    )
    assert c["pairs"] == 8 and c["solved"] == 3 and c["success_rate"] == pytest.approx(3 / 8)
    assert 0.0 <= c["ci_low"] < c["success_rate"] < c["ci_high"] <= 1.0
    # Every task unsolved: no spread, the interval collapses on the rate.
    none = arc_condition(tmp_path, "icl", {t: [False] for t in "abcd"})
    assert none["ci_low"] == none["ci_high"] == 0.0


def test_arc_table1_png_is_named_in_the_table(tmp_path):
    """stage=evaluate's ARC summary (the keys `table1.measure` writes) with three of the four conditions."""
    conditions = {
        "icl": arc_condition(tmp_path, "icl", {t: [False] for t in "abcd"}),
        "ttt_base": arc_condition(
            tmp_path, "ttt_base", {"a": [True, True], "b": [True, False], "c": [False], "d": [False, False]}
        ),
        "oracle": arc_condition(tmp_path, "oracle", {"a": [True], "b": [True], "c": [False], "d": [True]}),
    }
    summary = {
        "experiment": "demo_arc_cpu",
        "stage": "evaluate",
        "table": "table1",
        "model": "m",
        "seed": 0,
        "eval_tasks": 4,
        "train_tasks": 0,
        "conditions": conditions,
        "rounds": [],
        "final_policy": "m",
        "condition_seconds": {},
        "total_s": 1.0,
        "objective": conditions["icl"]["success_rate"],
    }
    summary["plots"] = table1.plots(summary, tmp_path)
    png = tmp_path / "table1.png"
    assert summary["plots"] == {"table1": str(png)}
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000
    table = table1.format_table(summary)
    assert table.splitlines()[-1].endswith(f"plots: {png}")
    assert "| TTT + Self-Edit (w/o prior RL)   |             37.5 |" in table
    low, high = 100 * conditions["ttt_base"]["ci_low"], 100 * conditions["ttt_base"]["ci_high"]
    assert f"[{low:.1f}, {high:.1f}]" in table


def _cell(value: float, name: str = "macro_accuracy") -> dict:
    return {name: value, "ci_low": value - 0.1, "ci_high": value + 0.1}


def test_round_curve_draws_likelihood_panel_and_reward_units(tmp_path, monkeypatch):
    """With held-out log-likelihoods a fourth panel appears, and a likelihood reward is drawn in nats,
    not multiplied into a percentage as accuracy rewards are."""
    import matplotlib.axes

    from seal_runner.domains.knowledge.report import plot_round_curve

    def heldout(shift: float) -> dict:
        conditions = ("base", "passage", "selfedit")
        return {
            **{c: _cell(0.01 + shift) for c in conditions},
            "answer_logprob": {c: _cell(-6.0 + shift, "mean_logprob") for c in conditions},
            "mean_selfedit_tokens": 150.0,
        }

    rewards = {"mean_reward": 0.09, "mean_best_of_k": 0.46, "mean_baseline": 0.0}
    summary = {
        "experiment": "demo",
        "heldout_articles": 20,
        "rounds": [
            {"round": 0, "reward": "likelihood", "heldout": heldout(0.0), "rewards": rewards},
            {"round": 1, "reward": "likelihood", "heldout": heldout(0.2)},
        ],
    }
    labels, drawn = [], []
    set_ylabel = matplotlib.axes.Axes.set
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "set",
        lambda self, **kw: labels.append(kw.get("ylabel")) or set_ylabel(self, **kw),
    )
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "plot",
        lambda self, x, y, *a, **kw: drawn.append(list(y)) or plot(self, x, y, *a, **kw),
    )
    path = plot_round_curve(summary, tmp_path / "curve.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert labels == [
        "held-out accuracy (%)",
        "log-prob per answer token",
        "reward (gain, nats per answer token)",
        "tokens",
    ]
    assert [0.09] in drawn and [0.46] in drawn  # not 9 and 46
