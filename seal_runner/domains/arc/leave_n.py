"""Leave-n pseudo-tasks: the test-time training data a self-edit's augmentation choice produces (paper §3).

Only the demonstrations are known at test time, so each demo in turn plays the test case and the others
(minus n-1 more, every combination) are its demonstrations. The chosen augmenters multiply this set;
colour-permuted, demo-shuffled copies are added when any augmenter is on; duplicates are dropped; and a
seeded shuffle caps the pool so the training cost per self-edit stays bounded.

`TTTAugmentationRule.reference` builds the pool as the reference's `get_test_time_train_data`
(few-shot/self-edit.py) does: its translation (`ReferenceTranslation`); duplicates dropped before the
copies are made; a demo-shuffled copy of every pseudo-task even with no augmenter, recoloured by the
reference's colour map (`reference_colour_permutation`) only when an augmenter is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations

import numpy as np

from seal_runner.choices import TTTAugmentationRule
from seal_runner.domains.arc.augment import (
    GridFn,
    build_augmenters,
    map_example,
    permute_colours,
    random_colour_permutation,
    reference_colour_permutation,
    shuffle_examples,
)
from seal_runner.domains.arc.data import ARCExample, ARCTask

MAX_GRID_SIDE = 30
MAX_EXAMPLES = 250


@dataclass(frozen=True)
class TTTExample:
    """One training sequence's content: demonstrations, then `test` as query (input) and answer (output)."""

    demos: tuple[ARCExample, ...]
    test: ARCExample

    def map_grids(self, fn: GridFn) -> TTTExample:
        return self.map_examples(partial(map_example, fn=fn))

    def map_examples(self, fn: Callable[[ARCExample], ARCExample]) -> TTTExample:
        return TTTExample(tuple(fn(ex) for ex in self.demos), fn(self.test))

    def grids(self) -> Iterator[np.ndarray]:
        for ex in (*self.demos, self.test):
            yield ex.input
            if ex.output is not None:
                yield ex.output

    def max_side(self) -> int:
        return max(max(grid.shape) for grid in self.grids())


def leave_n_pseudo_tasks(demos: Sequence[ARCExample], n: int) -> list[TTTExample]:
    """For each demo i: test = demo i, demos = the others minus every choice of n-1 more (order kept).

    Combinations that would leave no demonstration are skipped.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    pseudo_tasks = []
    for i, held_out in enumerate(demos):
        rest = [*demos[:i], *demos[i + 1 :]]
        if len(rest) - (n - 1) < 1:
            continue
        for dropped in combinations(range(len(rest)), n - 1):
            kept = tuple(ex for j, ex in enumerate(rest) if j not in dropped)
            pseudo_tasks.append(TTTExample(kept, held_out))
    return pseudo_tasks


def build_ttt_examples(
    task: ARCTask,
    groups: Iterable[str],
    *,
    ns: Sequence[int] = (1, 2),
    seed: int = 0,
    max_grid_side: int = MAX_GRID_SIDE,
    max_examples: int = MAX_EXAMPLES,
    length_fn: Callable[[TTTExample], int] | None = None,
    max_tokens: int | None = None,
    rule: TTTAugmentationRule = TTTAugmentationRule.ours,
) -> list[TTTExample]:
    """The pooled leave-n training set for `task` with augmentation `groups` (see module docstring).

    `length_fn`/`max_tokens` let the caller drop examples whose token length is >= `max_tokens` (the
    paper uses 8192) without this module knowing the tokenizer or the prompt format.
    """
    rng = np.random.default_rng(seed)
    augmenters = build_augmenters(groups, rng, rule, seed)
    originals = [pt for n in ns for pt in leave_n_pseudo_tasks(task.train, n)]
    pool = list(originals)
    for pseudo_task in originals:
        for augmenter in augmenters:
            augmented = pseudo_task.map_examples(augmenter.apply)
            if augmented.max_side() <= max_grid_side:
                pool.append(augmented)
    if rule == TTTAugmentationRule.reference:
        pool = list(dict.fromkeys(pool))
        pool += [_reference_copy(pt, rng, recolour=bool(augmenters)) for pt in pool]
    elif augmenters:
        pool += [_recolour_and_shuffle(pt, rng) for pt in pool]
    pool = list(dict.fromkeys(pool))
    if length_fn is not None and max_tokens is not None:
        pool = [pt for pt in pool if length_fn(pt) < max_tokens]
    if len(pool) > max_examples:
        order = np.random.default_rng(seed).permutation(len(pool))
        pool = [pool[i] for i in order[:max_examples]]
    return pool


def _recolour_and_shuffle(pseudo_task: TTTExample, rng: np.random.Generator) -> TTTExample:
    permutation = random_colour_permutation(rng)
    recoloured = pseudo_task.map_grids(lambda grid: permute_colours(grid, permutation))
    return TTTExample(tuple(shuffle_examples(recoloured.demos, rng)), recoloured.test)


def _reference_copy(pseudo_task: TTTExample, rng: np.random.Generator, recolour: bool) -> TTTExample:
    """The reference's copy: `PermuteColors` (only when an augmenter is on), then `PermuteExamples`."""
    if recolour:
        permutation = reference_colour_permutation(pseudo_task.grids(), rng)
        pseudo_task = pseudo_task.map_grids(lambda grid: permute_colours(grid, permutation))
    return TTTExample(tuple(shuffle_examples(pseudo_task.demos, rng)), pseudo_task.test)
