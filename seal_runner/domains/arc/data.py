"""ARC tasks: dataclasses and the loader for ARC-AGI challenges/solutions JSON files.

`load_tasks(split_tests=True)` splits a task with k test inputs into k subtasks "id-0" … "id-(k-1)", each
with one test input (44f52bb0 becomes 44f52bb0-0 and 44f52bb0-1), named as the reference's
`read_tasks_from_single_file` names them; `source_id` keeps the original id. The reference then regroups
them: one self-edit set and one adapter per source task, solved only when every test input is right
(`domain.test_inputs=per_task`, which loads with `split_tests=False`); `domain.test_inputs=split` keeps
the subtasks as independent tasks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from seal_runner.domains.arc.grids import GridLike, grid_key, to_array
from seal_runner.errors import InputError


class ARCDataError(InputError):
    """An ARC challenges/solutions file that cannot be used; the message names the file and task."""


PAPER_TRAIN_TASK_IDS: tuple[str, ...] = (
    "44f52bb0",
    "4be741c5",
    "5582e5ca",
    "5614dbcf",
    "5bd6f4ac",
    "6150a2bd",
    "67e8384a",
    "6d0aefbc",
    "6e02f1e3",
    "8be77c9e",
    "8d5021e8",
    "8e1813be",
)


@dataclass(frozen=True, eq=False)
class ARCExample:
    """One input/output pair; `output` is None for a test input whose solution was not loaded.

    Grids may be given as nested lists or arrays; they are validated and stored as read-only arrays.
    Equality and hashing go by grid contents so examples can be deduplicated in sets.
    """

    input: np.ndarray
    output: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", _read_only(self.input))
        if self.output is not None:
            object.__setattr__(self, "output", _read_only(self.output))

    @property
    def key(self) -> tuple:
        return grid_key(self.input), None if self.output is None else grid_key(self.output)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ARCExample) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def _read_only(grid: GridLike) -> np.ndarray:
    array = to_array(grid)  # always a fresh array, so freezing it never touches the caller's
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class ARCTask:
    """Demonstrations (`train`, always with outputs) and test inputs (outputs present when solved)."""

    task_id: str
    source_id: str
    train: tuple[ARCExample, ...]
    test: tuple[ARCExample, ...]


def split_test_inputs(task: ARCTask) -> list[ARCTask]:
    """One subtask per test input, named "{id}-{i}"; a single-test task is returned unchanged."""
    if len(task.test) <= 1:
        return [task]
    return [replace(task, task_id=f"{task.task_id}-{i}", test=(ex,)) for i, ex in enumerate(task.test)]


def load_tasks(
    challenges_path: str | Path,
    solutions_path: str | Path | None = None,
    *,
    task_ids: Iterable[str] | None = None,
    split_tests: bool = True,
) -> list[ARCTask]:
    """Load ARC-AGI tasks, in file order or in the order of `task_ids` when a subset is given.

    Raises ValueError naming the file, the task id and what is wrong (bad JSON, missing keys, bad grids,
    wrong number of solutions, unknown task ids).
    """
    challenges_path = Path(challenges_path)
    challenges = _read_json_object(challenges_path)
    if not challenges:
        raise ARCDataError(f"{challenges_path.name}: no tasks in the file")
    solutions = _read_json_object(Path(solutions_path)) if solutions_path is not None else None
    ids = list(challenges) if task_ids is None else list(task_ids)
    missing = [tid for tid in ids if tid not in challenges]
    if missing:
        raise ARCDataError(f"{challenges_path.name}: unknown task ids {missing}")
    tasks = []
    for tid in ids:
        task = _parse_task(tid, challenges[tid], challenges_path.name)
        if solutions is not None:
            task = _attach_solutions(task, solutions.get(tid), Path(solutions_path).name)
        tasks.extend(split_test_inputs(task) if split_tests else [task])
    return tasks


def _read_json_object(path: Path) -> dict:
    if not path.is_file():
        raise ARCDataError(f"{path}: no such ARC data file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ARCDataError(f"{path.name}: invalid JSON ({err})") from err
    except UnicodeDecodeError as err:
        raise ARCDataError(f"{path.name}: not UTF-8 text (byte {err.start}: {err.reason})") from err
    if not isinstance(data, dict):
        raise ARCDataError(
            f"{path.name}: expected a JSON object of task id -> task, got {type(data).__name__}"
        )
    return data


def _parse_task(task_id: str, raw: object, file_name: str) -> ARCTask:
    context = f"{file_name}: task {task_id}"
    if not isinstance(raw, dict):
        raise ARCDataError(f"{context}: expected an object with 'train' and 'test', got {type(raw).__name__}")
    for split in ("train", "test"):
        if not isinstance(raw.get(split), list) or not raw[split]:
            raise ARCDataError(f"{context}: '{split}' must be a non-empty list")
    train = tuple(
        _parse_example(ex, f"train[{i}]", True, task_id, file_name) for i, ex in enumerate(raw["train"])
    )
    test = tuple(
        _parse_example(ex, f"test[{i}]", False, task_id, file_name) for i, ex in enumerate(raw["test"])
    )
    return ARCTask(task_id=task_id, source_id=task_id, train=train, test=test)


def _parse_example(raw: object, where: str, needs_output: bool, task_id: str, file_name: str) -> ARCExample:
    if not isinstance(raw, dict) or "input" not in raw:
        raise ARCDataError(f"{file_name}: task {task_id}: {where} must be an object with an 'input' grid")
    if needs_output and "output" not in raw:
        raise ARCDataError(f"{file_name}: task {task_id}: {where} has no 'output' grid")
    try:
        grid_in = to_array(raw["input"], task_id=task_id, where=f"{where}.input")
        grid_out = (
            to_array(raw["output"], task_id=task_id, where=f"{where}.output") if "output" in raw else None
        )
    except ValueError as err:
        raise ARCDataError(f"{file_name}: {err}") from err
    return ARCExample(grid_in, grid_out)


def _attach_solutions(task: ARCTask, raw: object, file_name: str) -> ARCTask:
    context = f"{file_name}: task {task.task_id}"
    if raw is None:
        raise ARCDataError(f"{context}: no solutions for this task")
    if not isinstance(raw, list) or len(raw) != len(task.test):
        count = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise ARCDataError(f"{context}: expected a list of {len(task.test)} solution grid(s), got {count}")
    try:
        outputs = [to_array(grid, task_id=task.task_id, where=f"solution[{i}]") for i, grid in enumerate(raw)]
    except ValueError as err:
        raise ARCDataError(f"{file_name}: {err}") from err
    test = tuple(ARCExample(ex.input, out) for ex, out in zip(task.test, outputs, strict=True))
    return replace(task, test=test)
