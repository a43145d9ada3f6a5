"""Grid augmenters and the four augmentation groups a self-edit can switch on (paper §3).

Each augmenter is a named grid -> grid function applied to every input and output of an example, so a
task's rule is carried over to a transformed but consistent task. Bijective (geometric) augmenters also
carry their inverse: evaluation runs the model on a transformed query and maps the answer back.

Groups (11 + 3 + 6 + 3 augmenters):
  basic   rotate 90/180/270, flip up-down/left-right, reflect on axis 0/1 x reverse (grid and its mirror
          concatenated), one random translation (roll 0-3 per axis) drawn per task, transpose
          (`TTTAugmentationRule.reference`: the reference's translation, `ReferenceTranslation`)
  size    resolution x2 (cell -> 2x2 block), height x2, width x2
  chain   {rotate 90, rotate 270, rotate 180, flip up-down, flip left-right, transpose} then resolution x2
  repeat  tile 2x vertically, 2x horizontally, 2x2
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, TypeVar

import numpy as np

from seal_runner.choices import TTTAugmentationRule
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.grids import GRID_DTYPE

GridFn = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")

AUGMENTATION_GROUPS: tuple[str, ...] = ("basic", "size", "chain", "repeat")
MAX_TRANSLATE = 3


@dataclass(frozen=True)
class Augmenter:
    """A named grid transform; `inverse` is set only when the transform is a bijection on grids."""

    name: str
    forward: GridFn
    inverse: GridFn | None = None

    def apply(self, example: ARCExample) -> ARCExample:
        return map_example(example, self.forward)


def map_example(example: ARCExample, fn: GridFn) -> ARCExample:
    """Apply `fn` to the input, then (if present) the output of `example`."""
    grid_in = fn(example.input)
    return ARCExample(grid_in, None if example.output is None else fn(example.output))


@dataclass(frozen=True)
class ReferenceTranslation:
    """The reference's `RandomTranslateXY` as its TTT data builder uses it (few-shot/self-edit.py).

    The builder hands it a `RandomState(seed)` nothing has drawn from yet (the augmenters before it
    ignore their rng), and `share_rng` gives every example its own copy of that state. The input then
    draws a roll of `randint(0, min(4, side))` per axis and the output the next draws, so input and
    output get different shifts: the task's rule no longer holds unless it is shift-invariant. With
    equal grid sizes every example gets the same pair of shifts.
    """

    seed: int
    name: ClassVar[str] = "translate_reference"
    inverse: ClassVar[None] = None  # not a bijection of single grids: evaluation never uses it

    def apply(self, example: ARCExample) -> ARCExample:
        return map_example(example, partial(_reference_roll, rng=np.random.RandomState(self.seed)))


def _reference_roll(grid: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    shift_y = rng.randint(0, min(MAX_TRANSLATE + 1, grid.shape[0]))
    shift_x = rng.randint(0, min(MAX_TRANSLATE + 1, grid.shape[1]))
    return np.roll(grid, (shift_y, shift_x), axis=(0, 1))


def _identity(grid: np.ndarray) -> np.ndarray:
    return grid


def _reflect(grid: np.ndarray, axis: int, reverse: bool) -> np.ndarray:
    mirrored = np.flip(grid, axis=axis)
    parts = (mirrored, grid) if reverse else (grid, mirrored)
    return np.concatenate(parts, axis=axis)


def _then(grid: np.ndarray, first: GridFn, second: GridFn) -> np.ndarray:
    return second(first(grid))


IDENTITY = Augmenter("identity", _identity, _identity)
ROTATE_90 = Augmenter("rotate_90", partial(np.rot90, k=1), partial(np.rot90, k=-1))
ROTATE_180 = Augmenter("rotate_180", partial(np.rot90, k=2), partial(np.rot90, k=2))
ROTATE_270 = Augmenter("rotate_270", partial(np.rot90, k=3), partial(np.rot90, k=-3))
FLIP_UD = Augmenter("flip_ud", np.flipud, np.flipud)
FLIP_LR = Augmenter("flip_lr", np.fliplr, np.fliplr)
TRANSPOSE = Augmenter("transpose", np.transpose, np.transpose)
RESOLUTION_2X = Augmenter("resolution_2x", lambda g: np.repeat(np.repeat(g, 2, axis=0), 2, axis=1))
HEIGHT_2X = Augmenter("height_2x", partial(np.repeat, repeats=2, axis=0))
WIDTH_2X = Augmenter("width_2x", partial(np.repeat, repeats=2, axis=1))
TILE_VERTICAL = Augmenter("tile_2x1", partial(np.tile, reps=(2, 1)))
TILE_HORIZONTAL = Augmenter("tile_1x2", partial(np.tile, reps=(1, 2)))
TILE_2X2 = Augmenter("tile_2x2", partial(np.tile, reps=(2, 2)))


def reflect(axis: int, reverse: bool) -> Augmenter:
    """Grid followed by its mirror along `axis` (mirror first when `reverse`): doubles that side."""
    return Augmenter(
        f"reflect_{axis}{'_reverse' if reverse else ''}", partial(_reflect, axis=axis, reverse=reverse)
    )


def translate(dy: int, dx: int) -> Augmenter:
    """Cyclic shift (np.roll) by dy rows and dx columns; the inverse rolls back."""
    return Augmenter(
        f"translate_{dy}_{dx}",
        partial(np.roll, shift=(dy, dx), axis=(0, 1)),
        partial(np.roll, shift=(-dy, -dx), axis=(0, 1)),
    )


def chain(first: Augmenter, second: Augmenter) -> Augmenter:
    """`first` then `second` (used by the chain group, whose resolution step has no inverse)."""
    return Augmenter(
        f"{first.name}+{second.name}", partial(_then, first=first.forward, second=second.forward)
    )


def basic_augmenters(
    rng: np.random.Generator, rule: TTTAugmentationRule = TTTAugmentationRule.ours, seed: int = 0
) -> list[Augmenter | ReferenceTranslation]:
    """The 11 basic augmenters. Ours: `rng` draws the one translation used for the whole task; reference:
    the reference's translation from `seed` (`rng` is not drawn from)."""
    if rule == TTTAugmentationRule.reference:
        translation = ReferenceTranslation(seed)
    else:
        dy, dx = (int(v) for v in rng.integers(0, MAX_TRANSLATE + 1, size=2))
        translation = translate(dy, dx)
    return [
        ROTATE_90,
        ROTATE_180,
        ROTATE_270,
        FLIP_UD,
        FLIP_LR,
        reflect(0, False),
        reflect(0, True),
        reflect(1, False),
        reflect(1, True),
        translation,
        TRANSPOSE,
    ]


def size_augmenters() -> list[Augmenter]:
    return [RESOLUTION_2X, HEIGHT_2X, WIDTH_2X]


def chain_augmenters() -> list[Augmenter]:
    return [
        chain(base, RESOLUTION_2X)
        for base in (ROTATE_90, ROTATE_270, ROTATE_180, FLIP_UD, FLIP_LR, TRANSPOSE)
    ]


def repeat_augmenters() -> list[Augmenter]:
    return [TILE_VERTICAL, TILE_HORIZONTAL, TILE_2X2]


def build_augmenters(
    groups: Iterable[str],
    rng: np.random.Generator,
    rule: TTTAugmentationRule = TTTAugmentationRule.ours,
    seed: int = 0,
) -> list[Augmenter | ReferenceTranslation]:
    """Augmenters of the named groups, in `AUGMENTATION_GROUPS` order whatever order `groups` is given in
    (`rule` and `seed` choose the translation, see `basic_augmenters`)."""
    chosen = set(groups)
    unknown = chosen - set(AUGMENTATION_GROUPS)
    if unknown:
        raise ValueError(
            f"unknown augmentation group(s) {sorted(unknown)}; choose from {AUGMENTATION_GROUPS}"
        )
    augmenters: list[Augmenter | ReferenceTranslation] = []
    if "basic" in chosen:
        augmenters += basic_augmenters(rng, rule, seed)
    if "size" in chosen:
        augmenters += size_augmenters()
    if "chain" in chosen:
        augmenters += chain_augmenters()
    if "repeat" in chosen:
        augmenters += repeat_augmenters()
    return augmenters


def random_colour_permutation(rng: np.random.Generator) -> np.ndarray:
    """A lookup table over colours 0-9 that keeps 0 (the background) and permutes 1-9."""
    return np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(GRID_DTYPE)


def reference_colour_permutation(
    grids: Iterable[np.ndarray], rng: np.random.Generator | np.random.RandomState
) -> np.ndarray:
    """The reference's `PermuteColors` map (few-shot/arclib/augmenters.py) as a lookup table over 0-9.

    0 stays. The non-zero colours used anywhere in `grids` (demos, then the test input and output, in
    that order) go, in set order, to the unused colours 1-9 in a shuffled order; once those run out, a
    colour swaps with one drawn from a permutation of the used colours. Unlike
    `random_colour_permutation`, a colour that appears is never mapped to another that appears while
    unused colours remain. The set expressions are the reference's own: their iteration order, which
    decides who gets which colour, depends on how the sets are built.
    """
    cells: list[int] = []
    for grid in grids:
        cells += grid.flatten().tolist()
    used = set(cells) - {0}
    unused = list(set(list(range(1, 10))) - used)
    used_in_set_order = list(used)
    rng.shuffle(unused)
    swaps = rng.permutation(used_in_set_order).tolist()
    colour_map = {0: 0}
    for colour in used_in_set_order:
        if colour in colour_map:
            continue
        if unused:
            new_colour = unused.pop()
        else:
            new_colour = swaps.pop()
            colour_map[new_colour] = colour
            if colour in swaps:
                swaps.remove(colour)
        colour_map[colour] = new_colour
    return np.array([colour_map.get(c, c) for c in range(10)], dtype=GRID_DTYPE)


def permute_colours(grid: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    return permutation[grid]


def shuffle_examples(examples: Sequence[T], rng: np.random.Generator) -> list[T]:
    return [examples[i] for i in rng.permutation(len(examples))]
