"""Procedural ARC-style tasks: small, seeded, with known rules, for cheap end-to-end runs.

The real ARC tasks need a 1B model; these are sized (3-6 cells per side, 3-4 demos, one test) so that a
~135M model can plausibly learn a rule by test-time training, which makes the whole SEAL loop testable on
a CPU. Each family is a rule plus an input sampler; per-task parameters (palette, colour map, target
colour) are drawn from a generator seeded by (seed, family, index), so adding a family or changing
`n_per_family` never changes the other tasks.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from seal_runner.domains.arc.augment import GridFn
from seal_runner.domains.arc.data import ARCExample, ARCTask
from seal_runner.domains.arc.grids import GRID_DTYPE, grid_key

MIN_SIDE = 3
MAX_SIDE = 6
MAX_DRAWS = 1000


@dataclass(frozen=True)
class Recipe:
    """One task's rule and its input sampler (parameters already drawn)."""

    family: str
    rule: GridFn
    sample_input: Callable[[np.random.Generator], np.ndarray]


def _random_grid(
    rng: np.random.Generator, shape: tuple[int, int], palette: Sequence[int], density: float
) -> np.ndarray:
    cells = rng.choice(np.asarray(palette), size=shape)
    return np.where(rng.random(shape) < density, cells, 0).astype(GRID_DTYPE)


def _random_shape(rng: np.random.Generator, low: int = MIN_SIDE, high: int = MAX_SIDE) -> tuple[int, int]:
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def _palette(rng: np.random.Generator, size: int) -> list[int]:
    return [int(c) for c in rng.choice(np.arange(1, 10), size=size, replace=False)]


def _geometric(family: str, rule: GridFn) -> Callable[[np.random.Generator], Recipe]:
    def build(rng: np.random.Generator) -> Recipe:
        palette = _palette(rng, int(rng.integers(2, 4)))
        return Recipe(family, rule, lambda r: _random_grid(r, _random_shape(r), palette, 0.5))

    return build


def _colour_map(rng: np.random.Generator) -> Recipe:
    """Two or three colours are each replaced by a fixed other colour; every input shows all of them."""
    colours = _palette(rng, 6)
    sources, targets = colours[:3], colours[3:]
    n = int(rng.integers(2, 4))
    table = np.arange(10, dtype=GRID_DTYPE)
    table[sources[:n]] = targets[:n]

    def sample(r: np.random.Generator) -> np.ndarray:
        while True:
            grid = _random_grid(r, _random_shape(r), sources[:n], 0.7)
            if set(sources[:n]) <= set(np.unique(grid).tolist()):
                return grid

    return Recipe("colour_map", lambda grid: table[grid], sample)


def _fixed_shape(family: str, rule: GridFn) -> Callable[[np.random.Generator], Recipe]:
    """Families whose output doubles each side: 3x3 inputs keep outputs at 6x6."""

    def build(rng: np.random.Generator) -> Recipe:
        palette = _palette(rng, int(rng.integers(2, 4)))
        return Recipe(family, rule, lambda r: _random_grid(r, (MIN_SIDE, MIN_SIDE), palette, 0.6))

    return build


def gravity_down(grid: np.ndarray) -> np.ndarray:
    """Non-zero cells fall to the bottom of their column, keeping their top-to-bottom order."""
    out = np.zeros_like(grid)
    for c in range(grid.shape[1]):
        column = grid[:, c][grid[:, c] != 0]
        if column.size:
            out[-column.size :, c] = column
    return out


def _gravity(rng: np.random.Generator) -> Recipe:
    palette = _palette(rng, int(rng.integers(1, 4)))
    return Recipe("gravity_down", gravity_down, lambda r: _random_grid(r, _random_shape(r), palette, 0.3))


def components(grid: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected groups of equal non-zero colour, in row-major order of their first cell."""
    seen = np.zeros(grid.shape, dtype=bool)
    groups = []
    for start in zip(*np.nonzero(grid), strict=True):
        if seen[start]:
            continue
        colour, stack, group = grid[start], [start], []
        seen[start] = True
        while stack:
            r, c = stack.pop()
            group.append((int(r), int(c)))
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                inside = 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]
                if inside and not seen[nr, nc] and grid[nr, nc] == colour:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        groups.append(group)
    return groups


def recolour_largest(grid: np.ndarray, target: int) -> np.ndarray:
    """The largest object (first one on a tie) takes colour `target`."""
    out = grid.copy()
    for r, c in max(components(grid), key=len):
        out[r, c] = target
    return out


def _recolour_objects(rng: np.random.Generator) -> Recipe:
    """Objects of one colour; the unique largest is recoloured (inputs with a tie are redrawn)."""
    colour, target = _palette(rng, 2)

    def sample(r: np.random.Generator) -> np.ndarray:
        while True:
            grid = _random_grid(r, _random_shape(r, 4), [colour], 0.45)
            sizes = sorted((len(g) for g in components(grid)), reverse=True)
            if len(sizes) >= 2 and sizes[0] > sizes[1]:
                return grid

    return Recipe("recolour_objects", lambda grid: recolour_largest(grid, target), sample)


def crop_to_object(grid: np.ndarray) -> np.ndarray:
    """The bounding box of all non-zero cells."""
    rows, cols = np.nonzero(grid)
    return grid[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _crop(rng: np.random.Generator) -> Recipe:
    """One small multi-colour object somewhere on an empty 4-6 sided grid."""
    palette = _palette(rng, int(rng.integers(2, 4)))

    def sample(r: np.random.Generator) -> np.ndarray:
        while True:
            height, width = _random_shape(r, 4)
            obj_h, obj_w = int(r.integers(2, 4)), int(r.integers(2, 4))
            top, left = int(r.integers(0, height - obj_h + 1)), int(r.integers(0, width - obj_w + 1))
            grid = np.zeros((height, width), dtype=GRID_DTYPE)
            grid[top : top + obj_h, left : left + obj_w] = _random_grid(r, (obj_h, obj_w), palette, 0.8)
            if grid.any():
                return grid

    return Recipe("crop_to_object", crop_to_object, sample)


def scale_2x(grid: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(grid, 2, axis=0), 2, axis=1)


_BUILDERS: dict[str, Callable[[np.random.Generator], Recipe]] = {
    "flip_lr": _geometric("flip_lr", np.fliplr),
    "flip_ud": _geometric("flip_ud", np.flipud),
    "rotate90": _geometric("rotate90", lambda grid: np.rot90(grid, k=-1)),
    "transpose": _geometric("transpose", np.transpose),
    "colour_map": _colour_map,
    "tile_2x2": _fixed_shape("tile_2x2", lambda grid: np.tile(grid, (2, 2))),
    "gravity_down": _gravity,
    "recolour_objects": _recolour_objects,
    "crop_to_object": _crop,
    "scale_2x": _fixed_shape("scale_2x", scale_2x),
}
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)


def make_recipe(family: str, rng: np.random.Generator) -> Recipe:
    if family not in _BUILDERS:
        raise ValueError(f"unknown task family {family!r}; choose from {FAMILIES}")
    return _BUILDERS[family](rng)


def realise(recipe: Recipe, rng: np.random.Generator, task_id: str, n_demos: int) -> ARCTask:
    """`n_demos` demos and one test, all with distinct inputs whose output differs from the input."""
    examples: dict[tuple, ARCExample] = {}
    for _ in range(MAX_DRAWS):
        grid = recipe.sample_input(rng)
        output = recipe.rule(grid)
        if not np.array_equal(grid, output):
            examples.setdefault(grid_key(grid), ARCExample(grid, output))
        if len(examples) == n_demos + 1:
            *demos, test = examples.values()
            return ARCTask(task_id=task_id, source_id=task_id, train=tuple(demos), test=(test,))
    raise RuntimeError(f"{recipe.family}: could not draw {n_demos + 1} distinct non-trivial examples")


def generate_tasks(families: Sequence[str], n_per_family: int, seed: int) -> list[ARCTask]:
    """`n_per_family` tasks per family, ids "gen-{family}-{i:03d}", deterministic per (seed, family, i)."""
    tasks = []
    for family in families:
        for i in range(n_per_family):
            rng = np.random.default_rng([seed, zlib.crc32(family.encode()), i])
            recipe = make_recipe(family, rng)
            tasks.append(realise(recipe, rng, f"gen-{family}-{i:03d}", int(rng.integers(3, 5))))
    return tasks
