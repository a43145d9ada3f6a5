"""Leave-n pseudo-task construction: hand-computed counts, size filter, dedupe, token filter and the cap."""

from __future__ import annotations

import numpy as np
import pytest

from seal_runner.choices import TTTAugmentationRule
from seal_runner.domains.arc.augment import AUGMENTATION_GROUPS, ReferenceTranslation
from seal_runner.domains.arc.data import ARCExample, ARCTask
from seal_runner.domains.arc.leave_n import TTTExample, build_ttt_examples, leave_n_pseudo_tasks


def make_task(n_demos: int, side: int = 3, seed: int = 0) -> ARCTask:
    """Demos with many colours, so distinct demos and recoloured copies never collide by chance."""
    rng = np.random.default_rng(seed)
    demos = tuple(
        ARCExample(rng.integers(0, 10, size=(side, side)), rng.integers(0, 10, size=(side, side)))
        for _ in range(n_demos)
    )
    return ARCTask("t", "t", demos, (ARCExample(rng.integers(0, 10, size=(side, side))),))


def test_leave_one_out_on_four_demos() -> None:
    demos = make_task(4).train
    tasks = leave_n_pseudo_tasks(demos, 1)
    assert len(tasks) == 4
    for i, pseudo in enumerate(tasks):
        assert pseudo.test == demos[i]
        assert pseudo.demos == tuple(d for j, d in enumerate(demos) if j != i)


def test_leave_two_out_on_four_demos() -> None:
    d = make_task(4).train
    tasks = leave_n_pseudo_tasks(d, 2)
    # per held-out demo i, the 3 others minus one more: C(3, 1) = 3 -> 4 x 3 = 12, each with 2 demos
    assert len(tasks) == 12 and all(len(t.demos) == 2 for t in tasks)
    assert [t.demos for t in tasks[:3]] == [(d[2], d[3]), (d[1], d[3]), (d[1], d[2])]
    assert all(t.test == d[0] for t in tasks[:3])
    assert len(set(tasks)) == 12


def test_leave_n_skips_empty_demo_sets() -> None:
    demos = make_task(2).train
    assert len(leave_n_pseudo_tasks(demos, 1)) == 2
    assert leave_n_pseudo_tasks(demos, 2) == []
    with pytest.raises(ValueError):
        leave_n_pseudo_tasks(demos, 0)


def test_no_augmentation_means_originals_only() -> None:
    examples = build_ttt_examples(make_task(4), [])
    assert len(examples) == 4 + 12  # no colour-permuted copies without an augmenter


def test_size_group_counts() -> None:
    examples = build_ttt_examples(make_task(4), ["size"])
    # 16 originals + 16 x 3 augmented, then one recoloured + shuffled copy of each
    assert len(examples) == (16 + 16 * 3) * 2
    shapes = {ex.test.input.shape for ex in examples}
    assert shapes == {(3, 3), (6, 6), (6, 3), (3, 6)}


def zero_masks(example: TTTExample) -> list[bytes]:
    return sorted((d.input == 0).tobytes() + (d.output == 0).tobytes() for d in example.demos)


def test_recoloured_copies_permute_colours_and_shuffle_demos() -> None:
    task = make_task(3)
    examples = build_ttt_examples(task, ["repeat"])
    originals = set(leave_n_pseudo_tasks(task.train, 1) + leave_n_pseudo_tasks(task.train, 2))
    assert originals <= set(examples) and len(examples) == 9 * 4 * 2
    half = len(examples) // 2
    for src, copy in zip(examples[:half], examples[half:], strict=True):
        pairs = set()
        for a, b in ((src.test.input, copy.test.input), (src.test.output, copy.test.output)):
            pairs |= set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
        mapping = dict(pairs)
        assert len(mapping) == len(pairs) and mapping.get(0, 0) == 0  # one consistent map, 0 kept
        assert zero_masks(src) == zero_masks(copy)  # same demos up to order and colours


def test_oversized_grids_are_dropped() -> None:
    task = make_task(3, side=16)
    examples = build_ttt_examples(task, ["size"])
    # every size augmenter doubles a side to 32 > 30: 9 originals (3 + 3 x 2) and their recoloured copies
    assert len(examples) == 9 * 2
    assert max(ex.max_side() for ex in examples) == 16
    assert len(build_ttt_examples(task, ["size"], max_grid_side=32)) == 9 * 4 * 2


def test_duplicates_are_removed() -> None:
    demo = ARCExample([[1, 2]], [[2, 1]])
    task = ARCTask("d", "d", (demo, demo, demo), ())
    examples = build_ttt_examples(task, [])
    assert examples == [TTTExample((demo, demo), demo), TTTExample((demo,), demo)]


def test_cap_is_seeded_shuffle() -> None:
    task = make_task(4)
    first = build_ttt_examples(task, AUGMENTATION_GROUPS)
    assert len(first) == 250
    assert first == build_ttt_examples(task, AUGMENTATION_GROUPS)
    assert first != build_ttt_examples(task, AUGMENTATION_GROUPS, seed=1)
    assert len(build_ttt_examples(task, AUGMENTATION_GROUPS, max_examples=10)) == 10


def test_token_length_filter_drops_at_or_above_limit() -> None:
    def cells(example: TTTExample) -> int:
        return sum(grid.size for grid in example.grids())

    task = make_task(4)
    unfiltered = build_ttt_examples(task, ["size"], max_examples=1000)
    limit = 2 * 3 * 9 + 2 * 36 + 1  # keeps 2-demo originals at 3x3, drops anything larger
    kept = build_ttt_examples(task, ["size"], length_fn=cells, max_tokens=limit, max_examples=1000)
    assert 0 < len(kept) < len(unfiltered)
    assert all(cells(ex) < limit for ex in kept)
    assert kept == [ex for ex in unfiltered if cells(ex) < limit]
    boundary = cells(kept[0])
    assert kept[0] not in build_ttt_examples(task, ["size"], length_fn=cells, max_tokens=boundary)


REFERENCE = TTTAugmentationRule.reference


def same_up_to_demo_order(a: TTTExample, b: TTTExample) -> bool:
    return a.test == b.test and sorted(d.key for d in a.demos) == sorted(d.key for d in b.demos)


def test_reference_rule_adds_demo_shuffled_copies_without_augmenters() -> None:
    task = make_task(4)
    originals = leave_n_pseudo_tasks(task.train, 1) + leave_n_pseudo_tasks(task.train, 2)
    examples = build_ttt_examples(task, [], rule=REFERENCE)
    assert examples[: len(originals)] == originals
    copies = examples[len(originals) :]
    assert copies  # a shuffle that keeps the order is a duplicate of its original and dropped
    for copy in copies:  # same demos and colours, only reordered
        assert sum(same_up_to_demo_order(copy, original) for original in originals) == 1


def test_reference_rule_recolours_onto_unused_colours_with_an_augmenter() -> None:
    demos = (
        ARCExample([[0, 1], [2, 0]], [[2, 0], [0, 1]]),
        ARCExample([[1, 1], [0, 2]], [[2, 2], [0, 1]]),
        ARCExample([[0, 2], [1, 1]], [[1, 0], [2, 2]]),
    )
    task = ARCTask("r", "r", demos, ())
    examples = build_ttt_examples(task, ["repeat"], rule=REFERENCE)
    recoloured = [ex for ex in examples if {int(v) for g in ex.grids() for v in g.ravel()} != {0, 1, 2}]
    assert recoloured and len(examples) == 2 * 9 * 4  # 9 leave-1/2 pseudo-tasks x (1 + 3 repeats), x 2
    for ex in recoloured:
        colours = {int(v) for g in ex.grids() for v in g.ravel()}
        assert 0 in colours and len(colours) == 3 and colours.isdisjoint({1, 2})


def test_reference_rule_uses_the_reference_translation() -> None:
    task = make_task(3, side=5)
    originals = leave_n_pseudo_tasks(task.train, 1) + leave_n_pseudo_tasks(task.train, 2)
    examples = set(build_ttt_examples(task, ["basic"], rule=REFERENCE, max_examples=1000))
    translated = [pt.map_examples(ReferenceTranslation(0).apply) for pt in originals]
    assert set(translated) <= examples
    assert not set(build_ttt_examples(task, ["basic"], max_examples=1000)) & set(translated)
