"""The reference repository's vote (few-shot/arclib/voting.py), rule for rule (`domain.voting=reference`).

It differs from ours (voting.py) in what changes numbers:

1. Each category proposes 3 candidates, and there is an extra category "all" (every answer), listed
   first. The candidates are pooled as a list, so a grid proposed by k categories appears k times.
2. A category with fewer than 3 distinct answers fills the gap with its row-majority grid (each row the
   most common row of that length among the answers of the most common shape), else the column-majority
   one; with ties these can be grids no query answered.
3. The two attempts are the top 2 of the same top-3 rule over the pooled candidates; when the 2nd and
   3rd are proposed equally often the 3rd replaces the 2nd unless identity queries answered the 2nd
   more often. The two attempts may be the same grid.

Only the identity category and the inverses of the reference's five variants are categories there
(transpose, flip up-down, flip left-right, rotate 180, and rotate 90, whose answers the reference files
under their inverse "Rotate(270)"); answers of any other transform count in "all" only.

Ties are broken as the reference breaks them: by the iteration order of a Python set of the answers
(as tuples of rows; deterministic for integer tuples) and NumPy's `argsort`, so identical predictions in
the same order give the reference's attempts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Rows = tuple[tuple[int, ...], ...]

CATEGORY_ORDER: tuple[str, ...] = ("identity", "transpose", "flip_ud", "flip_lr", "rotate_180", "rotate_90")


def reference_vote(predictions: Iterable[tuple[str, np.ndarray | None]]) -> list[np.ndarray]:
    """Two attempts from (category, restored answer) pairs; None answers are skipped; [] if none parsed."""
    by_category: dict[str, list[Rows]] = {}
    for category, grid in predictions:
        if grid is not None:
            by_category.setdefault(category, []).append(_rows(grid))
    if not by_category:
        return []
    pooled = [rows for answers in by_category.values() for rows in answers]
    candidates = [c for c in _top_three(pooled) if c is not None]
    for category in CATEGORY_ORDER:
        if category in by_category:
            candidates += [c for c in _top_three(by_category[category]) if c is not None]
    first, second, third = _top_three(candidates)
    identity = by_category.get("identity")
    tied = candidates.count(second) == candidates.count(third)
    if identity is not None and tied and identity.count(third) >= identity.count(second):
        second = third
    return [np.array(first), np.array(second)]


def _top_three(answers: Sequence[Rows]) -> tuple[Rows | None, Rows | None, Rows | None]:
    """Most common, 2nd and 3rd answers; a missing one is the row-, else column-majority grid (which may
    repeat an earlier pick when both are taken)."""
    if not answers:
        return None, None, None
    unique = list(set(answers))
    counts = [answers.count(rows) for rows in unique]
    ranked = np.argsort(counts)
    first = unique[int(np.argmax(counts))]
    second = unique[ranked[-2]] if len(unique) > 1 else first
    third = unique[ranked[-3]] if len(unique) > 2 else first
    by_rows, by_columns = _majority(answers), _majority(answers, columns=True)
    if second == first:
        second = by_rows if by_rows != first else by_columns
    if third in (first, second):
        third = by_rows if by_rows not in (first, second) else by_columns
    return first, second, third


def _majority(answers: Sequence[Rows], *, columns: bool = False) -> Rows:
    """The most common shape, each row (column) the most common one of that width (height) at its index."""
    if columns:
        answers = [tuple(zip(*rows, strict=True)) for rows in answers]
    shapes = [(len(rows), len(rows[0])) for rows in answers]
    height, width = max(set(shapes), key=shapes.count)
    picked = []
    for r in range(height):
        options = [rows[r] for rows in answers if len(rows) > r and len(rows[r]) == width]
        picked.append(max(set(options), key=options.count))
    grid = tuple(picked)
    return tuple(zip(*grid, strict=True)) if columns else grid


def _rows(grid) -> Rows:
    return tuple(tuple(int(cell) for cell in row) for row in np.asarray(grid))
