"""ARC augmenters: inverses, shapes, group membership, colour permutation and shuffles.

The reference ports' expected values were obtained by running the reference's own `PermuteColors` and
`RandomTranslateXY` (few-shot/arclib/augmenters.py, with its arclib/arc.py) in isolation on the same
grids, with `RandomState(seed)` as its TTT data builder passes them.
"""

from __future__ import annotations

import numpy as np
import pytest

from seal_runner.choices import TTTAugmentationRule
from seal_runner.domains.arc.augment import (
    AUGMENTATION_GROUPS,
    FLIP_LR,
    FLIP_UD,
    HEIGHT_2X,
    RESOLUTION_2X,
    ROTATE_90,
    TILE_2X2,
    TILE_HORIZONTAL,
    TILE_VERTICAL,
    TRANSPOSE,
    WIDTH_2X,
    ReferenceTranslation,
    basic_augmenters,
    build_augmenters,
    chain_augmenters,
    permute_colours,
    random_colour_permutation,
    reference_colour_permutation,
    reflect,
    repeat_augmenters,
    shuffle_examples,
    size_augmenters,
)
from seal_runner.domains.arc.data import ARCExample


def random_grids(seed: int = 0, count: int = 25) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 10, size=tuple(rng.integers(1, 8, size=2))) for _ in range(count)]


def all_augmenters():
    return build_augmenters(AUGMENTATION_GROUPS, np.random.default_rng(0))


def test_group_sizes_and_unique_names() -> None:
    rng = np.random.default_rng(0)
    assert [
        len(basic_augmenters(rng)),
        len(size_augmenters()),
        len(chain_augmenters()),
        len(repeat_augmenters()),
    ] == [
        11,
        3,
        6,
        3,
    ]
    names = [aug.name for aug in all_augmenters()]
    assert len(names) == 23 == len(set(names))


def test_invertible_augmenters_round_trip() -> None:
    invertible = [aug for aug in all_augmenters() if aug.inverse is not None]
    names = {aug.name for aug in invertible}
    assert {"rotate_90", "rotate_180", "rotate_270", "flip_ud", "flip_lr", "transpose"} <= names
    assert any(name.startswith("translate_") for name in names)
    assert not any("+" in name or "reflect" in name for name in names)  # not bijections: no inverse
    for aug in invertible:
        for grid in random_grids():
            assert np.array_equal(aug.inverse(aug.forward(grid)), grid), aug.name
            assert np.array_equal(aug.forward(aug.inverse(grid)), grid), aug.name


def test_geometric_transforms_on_a_known_grid() -> None:
    grid = np.array([[1, 2, 3], [4, 5, 6]])
    assert ROTATE_90.forward(grid).tolist() == [[3, 6], [2, 5], [1, 4]]
    assert FLIP_UD.forward(grid).tolist() == [[4, 5, 6], [1, 2, 3]]
    assert FLIP_LR.forward(grid).tolist() == [[3, 2, 1], [6, 5, 4]]
    assert TRANSPOSE.forward(grid).tolist() == [[1, 4], [2, 5], [3, 6]]


def test_reflections_concatenate_grid_and_mirror() -> None:
    grid = np.array([[1, 2], [3, 4]])
    assert reflect(0, False).forward(grid).tolist() == [[1, 2], [3, 4], [3, 4], [1, 2]]
    assert reflect(0, True).forward(grid).tolist() == [[3, 4], [1, 2], [1, 2], [3, 4]]
    assert reflect(1, False).forward(grid).tolist() == [[1, 2, 2, 1], [3, 4, 4, 3]]
    assert reflect(1, True).forward(grid).tolist() == [[2, 1, 1, 2], [4, 3, 3, 4]]


@pytest.mark.parametrize(
    ("augmenter", "factor"),
    [
        (RESOLUTION_2X, (2, 2)),
        (HEIGHT_2X, (2, 1)),
        (WIDTH_2X, (1, 2)),
        (TILE_VERTICAL, (2, 1)),
        (TILE_HORIZONTAL, (1, 2)),
        (TILE_2X2, (2, 2)),
    ],
)
def test_size_and_repeat_shapes(augmenter, factor: tuple[int, int]) -> None:
    for grid in random_grids(1, 10):
        out = augmenter.forward(grid)
        assert out.shape == (grid.shape[0] * factor[0], grid.shape[1] * factor[1]), augmenter.name


def test_scaling_versus_tiling_content() -> None:
    grid = np.array([[1, 2]])
    assert RESOLUTION_2X.forward(grid).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]
    assert HEIGHT_2X.forward(grid).tolist() == [[1, 2], [1, 2]]
    assert WIDTH_2X.forward(grid).tolist() == [[1, 1, 2, 2]]
    assert TILE_HORIZONTAL.forward(grid).tolist() == [[1, 2, 1, 2]]
    assert TILE_VERTICAL.forward(grid).tolist() == [[1, 2], [1, 2]]


def test_chains_are_base_then_resolution() -> None:
    bases = [ROTATE_90.name, "rotate_270", "rotate_180", FLIP_UD.name, FLIP_LR.name, TRANSPOSE.name]
    chains = chain_augmenters()
    assert [aug.name for aug in chains] == [f"{name}+resolution_2x" for name in bases]
    grid = np.array([[1, 2, 3], [4, 5, 6]])
    assert np.array_equal(chains[0].forward(grid), RESOLUTION_2X.forward(ROTATE_90.forward(grid)))


def test_translation_is_one_seeded_draw() -> None:
    def shift(seed: int) -> str:
        return next(
            a.name for a in basic_augmenters(np.random.default_rng(seed)) if a.name.startswith("translate")
        )

    assert shift(3) == shift(3)
    for seed in range(20):
        dy, dx = (int(v) for v in shift(seed).split("_")[1:])
        assert 0 <= dy <= 3 and 0 <= dx <= 3
    assert len({shift(seed) for seed in range(20)}) > 1


def test_build_augmenters_order_and_unknown_group() -> None:
    rng = np.random.default_rng(0)
    assert [a.name for a in build_augmenters(["repeat", "size"], rng)] == [
        a.name for a in size_augmenters() + repeat_augmenters()
    ]
    assert build_augmenters([], rng) == []
    with pytest.raises(ValueError, match="unknown augmentation group"):
        build_augmenters(["colour"], rng)


def test_apply_maps_input_and_output() -> None:
    example = ARCExample([[1, 2]], [[3], [4]])
    out = TRANSPOSE.apply(example)
    assert out.input.tolist() == [[1], [2]] and out.output.tolist() == [[3, 4]]
    assert TRANSPOSE.apply(ARCExample([[1, 2]])).output is None


def test_colour_permutation_keeps_background() -> None:
    for seed in range(10):
        permutation = random_colour_permutation(np.random.default_rng(seed))
        assert permutation[0] == 0 and sorted(permutation.tolist()) == list(range(10))
        grid = np.array([[0, 1, 2], [9, 0, 5]])
        out = permute_colours(grid, permutation)
        assert (out == 0).tolist() == (grid == 0).tolist() and out[0, 1] == permutation[1]


def test_shuffle_examples_is_seeded_permutation() -> None:
    items = list(range(6))
    first = shuffle_examples(items, np.random.default_rng(5))
    assert sorted(first) == items and first == shuffle_examples(items, np.random.default_rng(5))


def test_reference_translation_is_seeded_rngs_only_and_replaces_ours() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    augmenters = basic_augmenters(rng, TTTAugmentationRule.reference, seed=0)
    assert rng.bit_generator.state == state  # the reference's translation does not draw from `rng`
    assert len(augmenters) == 11 and augmenters[9] == ReferenceTranslation(0)
    assert [a.name for a in augmenters if a.name.startswith("translate")] == ["translate_reference"]
    names = [a.name for a in build_augmenters(AUGMENTATION_GROUPS, rng, TTTAugmentationRule.reference)]
    assert len(names) == 23 == len(set(names)) and "translate_reference" in names


def test_reference_translation_matches_the_reference() -> None:
    """Seed 0: RandomState(0).randint(0, 4) gives 0, 3, 1, 0, so a grid with both sides >= 4 rolls its
    input by (0, 3) and its output by (1, 0); a side under 4 narrows that draw's range."""
    a = np.arange(25).reshape(5, 5) % 10
    b = np.arange(6).reshape(2, 3)
    c = np.array([[1, 2, 3, 4]])
    d = np.arange(16).reshape(4, 4) % 10
    e = np.arange(20).reshape(4, 5) % 10
    f = np.arange(30).reshape(5, 6) % 10
    translation = ReferenceTranslation(0)
    first, second, test = (translation.apply(ARCExample(x, y)) for x, y in ((a, b), (e, f), (c, d)))
    assert first.input.tolist() == [[2, 3, 4, 0, 1], [7, 8, 9, 5, 6]] * 2 + [[2, 3, 4, 0, 1]]
    assert first.output.tolist() == [[3, 4, 5], [0, 1, 2]]
    assert second.input.tolist() == [[2, 3, 4, 0, 1], [7, 8, 9, 5, 6]] * 2
    assert second.output.tolist() == [
        [4, 5, 6, 7, 8, 9],
        [0, 1, 2, 3, 4, 5],
        [6, 7, 8, 9, 0, 1],
        [2, 3, 4, 5, 6, 7],
        [8, 9, 0, 1, 2, 3],
    ]
    assert test.input.tolist() == [[1, 2, 3, 4]]
    assert test.output.tolist() == [[7, 4, 5, 6], [1, 8, 9, 0], [5, 2, 3, 4], [3, 0, 1, 2]]


def test_reference_translation_shifts_input_and_output_differently() -> None:
    grid = np.arange(36).reshape(6, 6) % 10
    moved = ReferenceTranslation(0).apply(ARCExample(grid, grid))
    assert np.array_equal(moved.input, np.roll(grid, (0, 3), axis=(0, 1)))
    assert np.array_equal(moved.output, np.roll(grid, (1, 0), axis=(0, 1)))
    assert ReferenceTranslation(0).apply(ARCExample(grid)).output is None


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        (0, [0, 8, 3, 3, 4, 7, 6, 7, 8, 9]),  # the reference: {0: 0, 1: 8, 2: 3, 5: 7}
        (1, [0, 9, 7, 3, 4, 3, 6, 7, 8, 9]),  # {0: 0, 1: 9, 2: 7, 5: 3}
        (7, [0, 8, 4, 3, 4, 6, 6, 7, 8, 9]),  # {0: 0, 1: 8, 2: 4, 5: 6}
    ],
)
def test_reference_colour_permutation_maps_used_colours_to_unused(seed: int, expected: list[int]) -> None:
    grids = [
        np.array([[0, 1, 2], [5, 0, 1]]),
        np.array([[2, 2], [1, 5]]),
        np.array([[5, 1], [0, 0]]),
        np.array([[1], [2]]),
    ]
    table = reference_colour_permutation(grids, np.random.RandomState(seed))
    assert table.tolist() == expected
    assert {int(table[c]) for c in (1, 2, 5)}.isdisjoint({1, 2, 5})


@pytest.mark.parametrize(
    ("grids", "seed", "expected"),
    [
        # every colour used: swaps drawn from a permutation of the used colours
        ((np.arange(10).reshape(2, 5), np.array([[9, 8], [7, 6]])), 0, [0, 6, 4, 7, 2, 9, 1, 3, 8, 5]),
        ((np.arange(10).reshape(2, 5), np.array([[9, 8], [7, 6]])), 3, [0, 9, 2, 4, 3, 6, 5, 8, 7, 1]),
        # one unused colour (9): colour 1 takes it first, then 4 swaps with 1 and 9 is left unused
        ((np.array([[1, 2, 3, 4], [5, 6, 7, 8]]),), 0, [0, 4, 5, 6, 1, 2, 3, 8, 7, 9]),
        ((np.array([[1, 2, 3, 4], [5, 6, 7, 8]]),), 5, [0, 8, 4, 7, 2, 6, 5, 3, 1, 9]),
    ],
)
def test_reference_colour_permutation_swaps_when_unused_colours_run_out(
    grids: tuple[np.ndarray, ...], seed: int, expected: list[int]
) -> None:
    table = reference_colour_permutation([*grids, *grids[::-1]], np.random.RandomState(seed))
    assert table.tolist() == expected


def test_reference_colour_permutation_keeps_background_and_is_injective_on_used_colours() -> None:
    for seed, grid in enumerate(random_grids(seed=3)):
        table = reference_colour_permutation([grid], np.random.default_rng(seed))
        used = sorted(set(grid.ravel().tolist()))
        assert table[0] == 0 and len({int(table[c]) for c in used}) == len(used)
