"""stage=continual's run protocol: the reference's draw of 8 runs x 8 sequences, its aggregation over
runs checked on its own saved results (tests/data/continual_reference_results.json), and the layout
and seeds of runs made without `continual.runs` kept as they were."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from seal_runner.domains.knowledge.continual import combine_runs, forgetting_stats, std_matrix
from seal_runner.domains.knowledge.data import Article
from seal_runner.errors import InputError
from seal_runner.stages.continual import aggregate_runs, run_sequences, sequence_plan

DATA = Path(__file__).parent / "data" / "continual_reference_results.json"
SQUAD_DEV_PASSAGES = 2067  # the reference's knowledge-incorporation/data/squad_val.json


def _pool(n: int) -> list[Article]:
    return [Article(i, f"t{i}", f"c{i}", ()) for i in range(n)]


def _indices(sequences: list[list[Article]]) -> list[list[int]]:
    return [[a.index for a in seq] for seq in sequences]


def test_a_run_draws_its_sequences_as_the_reference_script():
    """continual_self_edits.py: `random.seed(args.seed)` once, then `random.sample(full_data, n)` per
    sequence, with SEED=42+INDEX per run."""
    pool = _pool(SQUAD_DEV_PASSAGES)
    state = random.getstate()
    try:
        for run in range(3):
            random.seed(42 + run)
            expected = [[a.index for a in random.sample(pool, 8)] for _ in range(8)]
            assert _indices(run_sequences(pool, 8, 8, 42 + run)) == expected
    finally:
        random.setstate(state)
    assert _indices(run_sequences(pool, 1, 8, 42)) == [[456, 102, 1126, 1003, 914, 571, 419, 356]]


def test_sequence_plan_keeps_the_single_run_layout_and_seeds(tmp_path):
    pool = _pool(20)
    single = sequence_plan(
        OmegaConf.create({"runs": None, "sequences": 3, "length": 4, "seed": 42}), pool, tmp_path
    )
    assert len(single) == 1
    assert [(p.ids, p.out, p.tag) for p in single[0]] == [
        ((s,), tmp_path / f"seq_{s:02d}", f"seq{s}") for s in range(3)
    ]
    assert [_indices([p.articles])[0] for p in single[0]] == [
        [a.index for a in random.Random(42 + s).sample(pool, 4)] for s in range(3)
    ]
    runs = sequence_plan(
        OmegaConf.create({"runs": 2, "sequences": 3, "length": 4, "seed": 42}), pool, tmp_path
    )
    assert [[(p.ids, p.out.relative_to(tmp_path).as_posix(), p.tag) for p in run] for run in runs] == [
        [((r, s), f"run_{r:02d}/seq_{s:02d}", f"run{r}/seq{s}") for s in range(3)] for r in range(2)
    ]
    assert [[p.articles for p in run] for run in runs] == [
        run_sequences(pool, 3, 4, 42 + r) for r in range(2)
    ]
    with pytest.raises(InputError, match="continual.runs=0"):
        sequence_plan(OmegaConf.create({"runs": 0, "sequences": 1, "length": 4, "seed": 42}), pool, tmp_path)
    with pytest.raises(InputError, match="continual.length=21"):
        run_sequences(pool, 1, 21, 42)


def _nan_above_diagonal(matrix: list[list[float]]) -> list[list[float]]:
    """The reference stores unseen cells as 0.0; ours are NaN."""
    return [
        row if t == 0 else [v if j < t else math.nan for j, v in enumerate(row)]
        for t, row in enumerate(matrix)
    ]


def test_combining_the_reference_runs_gives_its_overall_results():
    data = json.loads(DATA.read_text())
    means = [_nan_above_diagonal(r["mean_over_sequences"]) for r in data["runs"]]
    stds = [_nan_above_diagonal(r["std_over_sequences"]) for r in data["runs"]]
    combined = combine_runs(means, stds)
    overall = data["overall"]
    for name in ("mean_over_sequences", "std_over_sequences"):
        ours = combined["mean" if name == "mean_over_sequences" else name]
        for t, row in enumerate(_nan_above_diagonal(overall[name])):
            for j, value in enumerate(row):
                assert math.isnan(value) == math.isnan(ours[t][j])
                if not math.isnan(value):
                    assert round(ours[t][j], 4) == pytest.approx(value, abs=1e-9), (name, t, j)
    stats = forgetting_stats(combined["mean"])  # the paper's Figure 6 numbers (method sheet, section 4)
    expected = [0.383, 0.432, 0.389, 0.361, 0.308, 0.305, 0.272, 0.247]
    assert stats["mean_seen_by_step"] == pytest.approx(expected, abs=1e-3)
    assert stats["untouched_mean"] == pytest.approx(0.308, abs=1e-3)
    assert all(v > 0 for row in combined["std_across_runs"] for v in row if not math.isnan(v))


def test_aggregate_runs_reports_each_run_and_the_spread():
    nan = math.nan
    run0 = [[[0.2, 0.4], [0.6, nan], [0.4, 0.8]], [[0.4, 0.0], [1.0, nan], [0.2, 0.6]]]
    run1 = [[[0.0, 0.2], [0.4, nan], [0.2, 0.4]], [[0.2, 0.2], [0.6, nan], [0.2, 0.2]]]
    out = aggregate_runs([run0, run1])
    assert [p["run"] for p in out["per_run"]] == [0, 1]
    assert out["per_run"][0]["mean"][1][0] == pytest.approx(0.8)
    assert out["per_run"][0]["std_over_sequences"][1][0] == pytest.approx(math.sqrt(0.08))
    assert out["mean"][1][0] == pytest.approx((0.8 + 0.5) / 2)
    assert out["std_over_sequences"][1][0] == pytest.approx((math.sqrt(0.08) + math.sqrt(0.02)) / 2)
    assert out["std_across_runs"][1][0] == pytest.approx(std_matrix([[[0.8]], [[0.5]]])[0][0])
    assert math.isnan(out["std_across_runs"][1][1])
    final = out["stats_across_runs"]["final_mean_seen"]
    assert final["mean"] == pytest.approx((0.5 + 0.25) / 2)
    assert final["std"] == pytest.approx(std_matrix([[[0.5]], [[0.25]]])[0][0])
    assert len(out["stats_across_runs"]["mean_seen_by_step"]["std"]) == 2
    single = aggregate_runs([[run0[0]]])  # one sequence per run: no spread to report
    assert math.isnan(single["std_over_sequences"][0][0]) and math.isnan(single["std_across_runs"][0][0])


def test_paper_continual_preset_takes_the_reference_protocol(hydra_ctx):
    cfg = compose_config(["experiment=paper/knowledge_continual"])
    c, d = cfg.continual, cfg.domain
    assert (c.runs, c.sequences, c.length, c.seed) == (8, 8, 8, 42)
    assert d.n_articles == -1 and d.start == 0 and d.shuffle_seed is None and d.split_newlines
    assert compose_config([]).continual.runs is None
