"""ARC grids: validation, conversion and the text formats the prompts and parsers use.

A grid is a non-empty rectangle of colours 0-9. JSON gives nested lists (`Grid`); everything else in this
package works on 2-D NumPy arrays, which make geometric augmentations one-liners. Arrays are normalised
to `GRID_DTYPE` so that two equal grids always have equal `grid_key`s (used for dedupe and voting).
"""

from __future__ import annotations

import re

import numpy as np

Grid = list[list[int]]
GridLike = Grid | np.ndarray

GRID_DTYPE = np.int8
MAX_COLOUR = 9

_NUMPY_ROW = re.compile(r"\[([^\[\]]*)\]")
_NUMPY_OUTER = re.compile(r"\[\s*((?:\[[^\[\]]*\]\s*)+)\]")


def to_array(grid: GridLike, *, task_id: str = "?", where: str = "grid") -> np.ndarray:
    """Validate `grid` and return it as a 2-D `GRID_DTYPE` array.

    Raises ValueError naming `task_id` and `where` (e.g. "train[2].output") so a bad file is easy to fix.
    """
    prefix = f"task {task_id}: {where}"
    if isinstance(grid, np.ndarray):
        return _array_from_ndarray(grid, prefix)
    if not isinstance(grid, (list, tuple)) or not grid:
        raise ValueError(f"{prefix}: expected a non-empty list of rows, got {_describe(grid)}")
    width = None
    for r, row in enumerate(grid):
        if not isinstance(row, (list, tuple)) or not row:
            raise ValueError(f"{prefix}: row {r} is not a non-empty list (got {_describe(row)})")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(f"{prefix}: ragged rows (row 0 has {width} cells, row {r} has {len(row)})")
        for c, cell in enumerate(row):
            if (
                isinstance(cell, bool)
                or not isinstance(cell, (int, np.integer))
                or not 0 <= cell <= MAX_COLOUR
            ):
                raise ValueError(f"{prefix}: cell ({r}, {c}) is {cell!r}, expected an integer colour 0-9")
    return np.array(grid, dtype=GRID_DTYPE)


def _array_from_ndarray(grid: np.ndarray, prefix: str) -> np.ndarray:
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"{prefix}: expected a non-empty 2-D array, got shape {grid.shape}")
    if not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"{prefix}: expected an integer array, got dtype {grid.dtype}")
    if grid.min() < 0 or grid.max() > MAX_COLOUR:
        raise ValueError(f"{prefix}: colours must be 0-9, found {grid.min()}..{grid.max()}")
    return grid.astype(GRID_DTYPE)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_list(grid: np.ndarray) -> Grid:
    """Plain nested lists of Python ints, for JSON output."""
    return [[int(cell) for cell in row] for row in np.asarray(grid)]


def grid_key(grid: GridLike) -> tuple[tuple[int, int], bytes]:
    """Hashable identity of a grid: equal grids (any integer dtype, list or array) give equal keys."""
    array = np.ascontiguousarray(grid, dtype=GRID_DTYPE)
    return array.shape, array.tobytes()


def format_numpy(grid: GridLike) -> str:
    """The paper's grid text: exactly what `str(np.array(grid))` prints for a grid of colours 0-9.

    Written out by hand rather than calling NumPy so the text never depends on global print options,
    and never wraps (>36 columns) or elides with "..." (>1000 cells) as NumPy would: it must stay lossless.
    """
    rows = [" ".join(str(int(cell)) for cell in row) for row in np.asarray(grid)]
    return "[" + "\n ".join(f"[{row}]" for row in rows) + "]"


def parse_numpy(text: str) -> np.ndarray | None:
    """Parse `format_numpy` text back to a grid; None if it is not a well-formed rectangular 0-9 grid.

    Whitespace is free (the model may indent or wrap differently); brackets, digits and shape are not.
    """
    match = _NUMPY_OUTER.fullmatch(text.strip())
    if match is None:
        return None
    rows = [row.split() for row in _NUMPY_ROW.findall(match.group(1))]
    return _rows_to_array(rows)


def format_compact(grid: GridLike) -> str:
    """One line of digits per row: the cheapest text form (one token per row run for most tokenizers)."""
    return "\n".join("".join(str(int(cell)) for cell in row) for row in np.asarray(grid))


def parse_compact(text: str) -> np.ndarray | None:
    """Parse `format_compact` text; None unless every line is digits and all lines have the same length."""
    lines = text.strip().splitlines()
    return _rows_to_array([list(line.strip()) for line in lines])


def format_rows(grid: GridLike) -> str:
    """Self-edit prompt rendering: one row per line, cells separated by single spaces."""
    return "\n".join(" ".join(str(int(cell)) for cell in row) for row in np.asarray(grid))


def _rows_to_array(rows: list[list[str]]) -> np.ndarray | None:
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        return None
    if any(len(cell) != 1 or not "0" <= cell <= "9" for row in rows for cell in row):
        return None
    return np.array([[int(cell) for cell in row] for row in rows], dtype=GRID_DTYPE)
