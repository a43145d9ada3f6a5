"""scripts/download_arc.py from local paths only (no network): both layouts, subsets, bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from seal_runner.domains.arc.data import load_tasks

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_arc.py"
TASK = {
    "train": [{"input": [[1, 0]], "output": [[0, 1]]}, {"input": [[2, 3]], "output": [[3, 2]]}],
    "test": [{"input": [[4, 0]], "output": [[0, 4]]}, {"input": [[5, 6]], "output": [[6, 5]]}],
}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("download_arc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["download_arc"] = module
    spec.loader.exec_module(module)
    return module


def test_per_task_files_become_challenges_and_solutions(script, tmp_path):
    source = tmp_path / "repo" / "training"
    source.mkdir(parents=True)
    for task_id in ("aaaa0001", "bbbb0002"):
        (source / f"{task_id}.json").write_text(json.dumps(TASK))
    out = tmp_path / "out"
    assert script.main(["--source", str(tmp_path / "repo"), "--split", "training", "--out", str(out)]) == 0
    challenges = json.loads((out / "arc-agi_training_challenges.json").read_text())
    assert sorted(challenges) == ["aaaa0001", "bbbb0002"]
    assert challenges["aaaa0001"]["test"] == [{"input": [[4, 0]]}, {"input": [[5, 6]]}]
    tasks = load_tasks(out / "arc-agi_training_challenges.json", out / "arc-agi_training_solutions.json")
    assert [t.task_id for t in tasks] == ["aaaa0001-0", "aaaa0001-1", "bbbb0002-0", "bbbb0002-1"]
    assert tasks[1].test[0].output.tolist() == [[6, 5]]


def test_kaggle_layout_subset_of_the_shared_files(script, shared_dir, tmp_path):
    out = tmp_path / "out"
    source = shared_dir / "data" / "arc"
    script.main(["--source", str(source), "--split", "training", "--paper-train", "--out", str(out)])
    tasks = load_tasks(out / "arc-agi_training_challenges.json", out / "arc-agi_training_solutions.json")
    assert len({t.source_id for t in tasks}) == 12 and len(tasks) == 13  # 44f52bb0 has two test inputs


def test_bad_local_input_fails_with_names(script, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="per-task"):
        script.main(
            ["--source", str(tmp_path / "empty"), "--split", "evaluation", "--out", str(tmp_path / "o")]
        )
    folder = tmp_path / "unsolved"
    folder.mkdir()
    (folder / "cccc0003.json").write_text(json.dumps({"train": TASK["train"], "test": [{"input": [[1]]}]}))
    with pytest.raises(ValueError, match="cccc0003.*no 'output'"):
        script.main(["--source", str(folder), "--split", "training", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="zzzz"):
        script.main(
            [
                "--source",
                str(folder),
                "--split",
                "training",
                "--task-ids",
                "zzzz",
                "--out",
                str(tmp_path / "o"),
            ]
        )
