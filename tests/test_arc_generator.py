"""Procedural ARC tasks: determinism, sizes, and each family's outputs against an independent rule."""

from __future__ import annotations

import numpy as np
import pytest

from seal_runner.domains.arc.generator import (
    FAMILIES,
    components,
    crop_to_object,
    generate_tasks,
    gravity_down,
    make_recipe,
    realise,
    recolour_largest,
)

SEED = 7


def expected_rule(family: str, inp: np.ndarray, out: np.ndarray) -> bool:
    """Check `out` against a rule written independently of the generator (parameters read off the pair)."""
    if family == "flip_lr":
        return np.array_equal(out, inp[:, ::-1])
    if family == "flip_ud":
        return np.array_equal(out, inp[::-1, :])
    if family == "rotate90":  # clockwise: first row of the output is the first column read bottom-up
        return out.shape == inp.shape[::-1] and out[0].tolist() == inp[::-1, 0].tolist()
    if family == "transpose":
        return np.array_equal(out, inp.T)
    if family == "tile_2x2":
        return np.array_equal(out, np.block([[inp, inp], [inp, inp]]))
    if family == "scale_2x":
        return np.array_equal(out, np.kron(inp, np.ones((2, 2), dtype=inp.dtype)))
    if family == "gravity_down":
        columns_sorted = all(
            (out[:, c] != 0).tolist() == sorted((out[:, c] != 0).tolist())
            and out[:, c][out[:, c] != 0].tolist() == inp[:, c][inp[:, c] != 0].tolist()
            for c in range(inp.shape[1])
        )
        return out.shape == inp.shape and columns_sorted
    if family == "crop_to_object":
        rows, cols = np.where(inp.any(axis=1))[0], np.where(inp.any(axis=0))[0]
        return np.array_equal(out, inp[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    raise AssertionError(family)


def task_pairs(task):
    return [(ex.input, ex.output) for ex in (*task.train, *task.test)]


def test_every_family_generates_small_valid_tasks() -> None:
    tasks = generate_tasks(FAMILIES, 3, SEED)
    assert len(tasks) == 3 * len(FAMILIES) == len({t.task_id for t in tasks})
    for task in tasks:
        assert 3 <= len(task.train) <= 4 and len(task.test) == 1
        pairs = task_pairs(task)
        assert len({inp.tobytes() + bytes(inp.shape) for inp, _ in pairs}) == len(pairs)  # distinct inputs
        for inp, out in pairs:
            assert max(inp.shape + out.shape) <= 6 and min(inp.shape + out.shape) >= 1
            assert not np.array_equal(inp, out)


@pytest.mark.parametrize(
    "family",
    ["flip_lr", "flip_ud", "rotate90", "transpose", "tile_2x2", "scale_2x", "gravity_down", "crop_to_object"],
)
def test_parameter_free_families_follow_their_rule(family: str) -> None:
    for task in generate_tasks([family], 4, SEED):
        for inp, out in task_pairs(task):
            assert expected_rule(family, inp, out), (task.task_id, inp, out)


def test_colour_map_is_one_consistent_map_shown_in_every_demo() -> None:
    for task in generate_tasks(["colour_map"], 5, SEED):
        mapping: dict[int, int] = {}
        for inp, out in task_pairs(task):
            assert inp.shape == out.shape
            for a, b in zip(inp.ravel().tolist(), out.ravel().tolist(), strict=True):
                assert mapping.setdefault(a, b) == b
        changed = {a for a, b in mapping.items() if a != b}
        assert 2 <= len(changed) <= 3 and mapping.get(0, 0) == 0
        for inp, _ in task_pairs(task):
            assert changed <= set(inp.ravel().tolist())  # every input shows every mapped colour


def test_recolour_objects_changes_exactly_the_unique_largest_object() -> None:
    for task in generate_tasks(["recolour_objects"], 5, SEED):
        targets = set()
        for inp, out in task_pairs(task):
            sizes = sorted((len(group) for group in components(inp)), reverse=True)
            assert sizes[0] > sizes[1]
            largest = max(components(inp), key=len)
            changed = list(zip(*np.nonzero(inp != out), strict=True))
            assert sorted((int(r), int(c)) for r, c in changed) == sorted(largest)
            targets |= {int(out[r, c]) for r, c in changed}
        assert len(targets) == 1


def test_recipe_rule_produces_every_output() -> None:
    for family in FAMILIES:
        rng = np.random.default_rng(1)
        recipe = make_recipe(family, rng)
        task = realise(recipe, rng, "x", 3)
        for inp, out in task_pairs(task):
            assert np.array_equal(recipe.rule(inp), out), family


def test_helpers_on_hand_made_grids() -> None:
    grid = np.array([[1, 0, 2], [0, 0, 0], [0, 3, 0]])
    assert gravity_down(grid).tolist() == [[0, 0, 0], [0, 0, 0], [1, 3, 2]]
    assert crop_to_object(np.array([[0, 0, 0], [0, 4, 0], [0, 5, 5]])).tolist() == [[4, 0], [5, 5]]
    blobs = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    assert sorted(len(g) for g in components(blobs)) == [2, 3]
    assert recolour_largest(blobs, 7).tolist() == [[1, 1, 0], [0, 0, 0], [7, 7, 7]]


def test_deterministic_per_seed_and_independent_of_other_families() -> None:
    def signature(tasks):
        return [(t.task_id, t.train, t.test) for t in tasks]

    assert signature(generate_tasks(FAMILIES, 2, SEED)) == signature(generate_tasks(FAMILIES, 2, SEED))
    assert signature(generate_tasks(FAMILIES, 2, SEED)) != signature(generate_tasks(FAMILIES, 2, SEED + 1))
    alone = generate_tasks(["gravity_down"], 2, SEED)
    mixed = generate_tasks(["flip_lr", "gravity_down"], 3, SEED)
    assert signature(alone) == signature(mixed[3:5])


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown task family"):
        generate_tasks(["nope"], 1, 0)
