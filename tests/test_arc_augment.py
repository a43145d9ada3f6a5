"""ARC augmenters: inverses, shapes, group membership, colour permutation and shuffles."""

from __future__ import annotations

import numpy as np
import pytest

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
    basic_augmenters,
    build_augmenters,
    chain_augmenters,
    permute_colours,
    random_colour_permutation,
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
