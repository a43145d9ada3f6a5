"""Grid augmenters and the four augmentation groups a self-edit can switch on (paper §3).

Each augmenter is a named grid -> grid function applied to every input and output of an example, so a
task's rule is carried over to a transformed but consistent task. Bijective (geometric) augmenters also
carry their inverse: evaluation runs the model on a transformed query and maps the answer back.

Groups (11 + 3 + 6 + 3 augmenters):
  basic   rotate 90/180/270, flip up-down/left-right, reflect on axis 0/1 x reverse (grid and its mirror
          concatenated), one random translation (roll 0-3 per axis) drawn per task, transpose
  size    resolution x2 (cell -> 2x2 block), height x2, width x2
  chain   {rotate 90, rotate 270, rotate 180, flip up-down, flip left-right, transpose} then resolution x2
  repeat  tile 2x vertically, 2x horizontally, 2x2
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

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
    """Apply `fn` to the input and (if present) the output of `example`."""
    output = None if example.output is None else fn(example.output)
    return ARCExample(fn(example.input), output)


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


def basic_augmenters(rng: np.random.Generator) -> list[Augmenter]:
    """The 11 basic augmenters; `rng` draws the one random translation used for the whole task."""
    dy, dx = (int(v) for v in rng.integers(0, MAX_TRANSLATE + 1, size=2))
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
        translate(dy, dx),
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


def build_augmenters(groups: Iterable[str], rng: np.random.Generator) -> list[Augmenter]:
    """Augmenters of the named groups, in `AUGMENTATION_GROUPS` order whatever order `groups` is given in."""
    chosen = set(groups)
    unknown = chosen - set(AUGMENTATION_GROUPS)
    if unknown:
        raise ValueError(
            f"unknown augmentation group(s) {sorted(unknown)}; choose from {AUGMENTATION_GROUPS}"
        )
    augmenters: list[Augmenter] = []
    if "basic" in chosen:
        augmenters += basic_augmenters(rng)
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


def permute_colours(grid: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    return permutation[grid]


def shuffle_examples(examples: Sequence[T], rng: np.random.Generator) -> list[T]:
    return [examples[i] for i in rng.permutation(len(examples))]
