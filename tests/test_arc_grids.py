"""ARC grids (validation, text formats) and task loading, including the paper's real 12-task subset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from seal_runner.domains.arc.data import PAPER_TRAIN_TASK_IDS, ARCExample, load_tasks
from seal_runner.domains.arc.grids import (
    format_compact,
    format_numpy,
    format_rows,
    grid_key,
    parse_compact,
    parse_numpy,
    to_array,
    to_list,
)

SHARED = Path(os.environ.get("SEAL_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
ARC_DIR = SHARED / "data" / "arc"
needs_arc_data = pytest.mark.skipif(not ARC_DIR.is_dir(), reason=f"ARC data not found at {ARC_DIR}")


def random_grids(seed: int, count: int, max_side: int = 30) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, max_side), (max_side, 1), (max_side, max_side)]
    shapes += [tuple(int(s) for s in rng.integers(1, max_side + 1, size=2)) for _ in range(count)]
    return [rng.integers(0, 10, size=shape) for shape in shapes]


def test_numpy_format_matches_numpy_printing() -> None:
    for grid in random_grids(0, 40):
        assert format_numpy(grid) == str(np.array(grid)), grid.shape
        assert format_numpy(to_list(grid)) == str(np.array(grid))
    assert format_numpy([[0, 1, 2], [3, 4, 5]]) == "[[0 1 2]\n [3 4 5]]"


@pytest.mark.parametrize(("fmt", "parse"), [(format_numpy, parse_numpy), (format_compact, parse_compact)])
def test_text_round_trip(fmt, parse) -> None:
    for grid in random_grids(1, 40):
        parsed = parse(fmt(grid))
        assert parsed is not None and np.array_equal(parsed, grid)


def test_compact_and_rows_formats() -> None:
    assert format_compact([[0, 1], [2, 3]]) == "01\n23"
    assert format_rows([[0, 1], [2, 3]]) == "0 1\n2 3"


def test_numpy_parse_tolerates_whitespace_only() -> None:
    assert np.array_equal(parse_numpy("  [[1 2]\n   [3  4]]\n"), [[1, 2], [3, 4]])
    assert np.array_equal(parse_numpy("[[1 2] [3 4]]"), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "[1 2 3]",
        "[[1 2]\n [3]]",
        "[[1 2]",
        "[[1 10]]",
        "[[a b]]",
        "[[]]",
        "[[1, 2]]",
        "[[1 2]]]",
        "[[-1]]",
    ],
)
def test_numpy_parse_rejects_malformed(text: str) -> None:
    assert parse_numpy(text) is None


@pytest.mark.parametrize("text", ["", "12\n3", "1a", "1 2", "x"])
def test_compact_parse_rejects_malformed(text: str) -> None:
    assert parse_compact(text) is None


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ([], "non-empty list"),
        ([[]], "row 0"),
        ([[1, 2], [3]], "ragged rows"),
        ([[1, 10]], "cell (0, 1) is 10"),
        ([[-1]], "cell (0, 0)"),
        ([[True]], "cell (0, 0)"),
        ([[1.0]], "cell (0, 0)"),
        (np.zeros((2,), dtype=int), "2-D"),
        (np.full((2, 2), 12), "colours must be 0-9"),
    ],
)
def test_validation_names_task_and_grid(grid, message: str) -> None:
    with pytest.raises(ValueError, match="task abc: train\\[1\\].output") as err:
        to_array(grid, task_id="abc", where="train[1].output")
    assert message in str(err.value)


def test_grid_key_ignores_container_and_dtype() -> None:
    grid = [[1, 2], [3, 4]]
    assert grid_key(grid) == grid_key(np.array(grid, dtype=np.int64)) == grid_key(to_array(grid))
    assert grid_key([[1, 2, 3, 4]]) != grid_key(grid)
    assert to_array([[np.int64(3)]]).tolist() == [[3]]


def test_examples_compare_by_content_and_are_read_only() -> None:
    a = ARCExample(np.array([[1, 2]]), np.array([[3]]))
    assert a == ARCExample([[1, 2]], [[3]]) and len({a, ARCExample([[1, 2]], [[3]])}) == 1
    assert a != ARCExample([[1, 2]], None)
    with pytest.raises(ValueError):
        a.input[0, 0] = 5


@needs_arc_data
def test_load_paper_subset_splits_multi_test_tasks() -> None:
    tasks = load_tasks(
        ARC_DIR / "arc-agi_training_challenges_filtered_1B_training_set.json",
        ARC_DIR / "arc-agi_training_solutions_filtered_1B_training_set.json",
    )
    ids = [task.task_id for task in tasks]
    assert len(tasks) == 13 and "44f52bb0-0" in ids and "44f52bb0-1" in ids and "44f52bb0" not in ids
    assert {task.source_id for task in tasks} == set(PAPER_TRAIN_TASK_IDS)
    for task in tasks:
        assert 2 <= len(task.train) <= 6 and len(task.test) == 1 and task.test[0].output is not None
        assert all(max(g.shape) <= 30 for ex in (*task.train, *task.test) for g in (ex.input, ex.output))
    split = {task.task_id: task for task in tasks}
    assert split["44f52bb0-0"].test[0].output.tolist() == [[1]]
    assert split["44f52bb0-1"].test[0].output.tolist() == [[7]]


@needs_arc_data
def test_full_file_subset_matches_filtered_file() -> None:
    full = load_tasks(
        ARC_DIR / "arc-agi_training_challenges.json",
        ARC_DIR / "arc-agi_training_solutions.json",
        task_ids=PAPER_TRAIN_TASK_IDS,
        split_tests=False,
    )
    filtered = load_tasks(
        ARC_DIR / "arc-agi_training_challenges_filtered_1B_training_set.json", split_tests=False
    )
    assert [t.task_id for t in full] == list(PAPER_TRAIN_TASK_IDS) == [t.task_id for t in filtered]
    for a, b in zip(full, filtered, strict=True):
        assert a.train == b.train and [ex.input.tolist() for ex in a.test] == [
            ex.input.tolist() for ex in b.test
        ]
        assert all(ex.output is None for ex in b.test)
    assert len(full[0].test) == 2


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


GOOD_TASK = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]]}]}


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            {"train": [{"input": [[1, 2], [3]], "output": [[2]]}], "test": [{"input": [[3]]}]},
            "train[0].input: ragged",
        ),
        ({"train": [{"input": [[1]]}], "test": [{"input": [[3]]}]}, "train[0] has no 'output'"),
        ({"train": [], "test": [{"input": [[3]]}]}, "'train' must be a non-empty list"),
        ({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[11]]}]}, "test[0].input: cell"),
    ],
)
def test_bad_challenge_file_names_file_task_and_problem(tmp_path: Path, task: dict, message: str) -> None:
    path = write_json(tmp_path / "bad.json", {"t1": task})
    with pytest.raises(ValueError) as err:
        load_tasks(path)
    assert "bad.json" in str(err.value) and "t1" in str(err.value) and message in str(err.value)


def test_bad_solutions_and_ids(tmp_path: Path) -> None:
    challenges = write_json(tmp_path / "c.json", {"t1": GOOD_TASK})
    with pytest.raises(ValueError, match="s.json: task t1: expected a list of 1 solution"):
        load_tasks(challenges, write_json(tmp_path / "s.json", {"t1": [[[1]], [[2]]]}))
    with pytest.raises(ValueError, match="s2.json: task t1: no solutions"):
        load_tasks(challenges, write_json(tmp_path / "s2.json", {}))
    with pytest.raises(ValueError, match=r"c.json: unknown task ids \['nope'\]"):
        load_tasks(challenges, task_ids=["nope"])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: invalid JSON"):
        load_tasks(tmp_path / "broken.json")
    assert load_tasks(challenges, write_json(tmp_path / "ok.json", {"t1": [[[4]]]}))[0].test[
        0
    ].output.tolist() == [[4]]
