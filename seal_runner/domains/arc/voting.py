"""Evaluation queries, hierarchical voting and pass@2 scoring for ARC (paper §3).

One test input is asked many ways: every leave-one-out subset of the demos in several orders, plus up to
five geometric variants of random queries (the answer is mapped back with the inverse transform). Two
rules draw them (`domain.eval_queries`): ours takes `n_permutations` distinct orders per subset and keeps
every variant; the reference (few-shot/inference/preprocess.py) takes the original order and
`n_permutations - 1` random shuffles, drops repeated queries, and skips a variant that equals an earlier
query (a symmetric task would otherwise vote twice with one answer). Answers are
then voted on in two levels, which is more robust than one flat vote because a transform that the model
handles badly can only contribute its own top three candidates:

1. per transform ("category"): the 3 most frequent answers (ties: first seen);
2. overall: candidates ranked by how many categories proposed them, ties going to the identity category's
   candidates, then to more total votes, then to the first seen; the top 2 are the two attempts.

The reference's own vote (an extra "all" category, row- and column-majority fillers for a category
with fewer than 3 distinct answers, pooled candidates) is reference_vote.py, `domain.voting=reference`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from seal_runner.choices import EvalQueryRule
from seal_runner.domains.arc.augment import (
    FLIP_LR,
    FLIP_UD,
    IDENTITY,
    ROTATE_90,
    ROTATE_180,
    TRANSPOSE,
    Augmenter,
    shuffle_examples,
)
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.grids import GridLike, grid_key

GEOMETRIC_VARIANTS: tuple[Augmenter, ...] = (TRANSPOSE, FLIP_UD, FLIP_LR, ROTATE_90, ROTATE_180)
N_PERMUTATIONS = 2
PER_CATEGORY = 3
N_ATTEMPTS = 2


@dataclass(frozen=True)
class EvalQuery:
    """A prompt's content (demos + test input, already transformed) and the transform it was made with.

    `category` groups answers for voting; `restore` maps a decoded answer back to the original frame.
    """

    demos: tuple[ARCExample, ...]
    test_input: np.ndarray
    transform: Augmenter

    @property
    def category(self) -> str:
        return self.transform.name

    def restore(self, grid: np.ndarray) -> np.ndarray:
        return self.transform.inverse(grid)

    @property
    def key(self) -> tuple:
        """What the model sees (demos and test input); equal keys are the same prompt."""
        return self.demos, grid_key(self.test_input)


def build_eval_queries(
    demos: Sequence[ARCExample],
    test_input: np.ndarray,
    rng: np.random.Generator,
    *,
    n_permutations: int = N_PERMUTATIONS,
    variants: Sequence[Augmenter] = GEOMETRIC_VARIANTS,
    rule: EvalQueryRule = EvalQueryRule.ours,
) -> list[EvalQuery]:
    """Identity queries (leave-one-out subsets x orders), then one variant per transform in `variants`.

    The first order of a subset is the original. `rule=ours`: the others are distinct random orders
    (fewer when the subset has fewer orders). `rule=reference`: `n_permutations - 1` random shuffles,
    a query equal to an earlier one dropped, and a variant equal to an earlier query skipped. A single
    demo is used as is, since leaving it out would leave nothing.
    """
    subsets = [list(demos)] if len(demos) < 2 else [[*demos[:i], *demos[i + 1 :]] for i in range(len(demos))]
    draw = _shuffled_orders if rule == EvalQueryRule.reference else _distinct_orders
    drop_repeats = rule == EvalQueryRule.reference
    seen: set[tuple] = set()
    identity = []
    for subset in subsets:
        for order in draw(subset, n_permutations, rng):
            query = EvalQuery(order, test_input, IDENTITY)
            if not (drop_repeats and query.key in seen):
                seen.add(query.key)
                identity.append(query)
    transformed = []
    for transform in variants:
        if transform.inverse is None:
            raise ValueError(
                f"variant {transform.name} has no inverse, so its answers could not be mapped back"
            )
        base = identity[int(rng.integers(len(identity)))]
        demos_t = tuple(transform.apply(ex) for ex in base.demos)
        query = EvalQuery(demos_t, transform.forward(base.test_input), transform)
        if not (drop_repeats and query.key in seen):
            seen.add(query.key)
            transformed.append(query)
    return identity + transformed


def _distinct_orders(
    subset: Sequence[ARCExample], n_orders: int, rng: np.random.Generator
) -> list[tuple[ARCExample, ...]]:
    """The original order, then distinct random orders until `n_orders` (or all there are)."""
    orders = [tuple(subset)]
    for _ in range(min(n_orders, _count_orders(subset)) - 1):
        order = tuple(subset)
        while order in orders:
            order = tuple(shuffle_examples(subset, rng))
        orders.append(order)
    return orders


def _shuffled_orders(
    subset: Sequence[ARCExample], n_orders: int, rng: np.random.Generator
) -> list[tuple[ARCExample, ...]]:
    """The original order, then `n_orders - 1` random shuffles (repeats included; the caller drops them)."""
    return [tuple(subset)] + [tuple(shuffle_examples(subset, rng)) for _ in range(n_orders - 1)]


def _count_orders(examples: Sequence[ARCExample]) -> int:
    """Number of distinct orderings (equal demos are interchangeable), so the draw loop always ends."""
    count = math.factorial(len(examples))
    for multiplicity in Counter(examples).values():
        count //= math.factorial(multiplicity)
    return count


def vote(
    predictions: Iterable[tuple[str, np.ndarray | None]],
    *,
    per_category: int = PER_CATEGORY,
    n_attempts: int = N_ATTEMPTS,
) -> list[np.ndarray]:
    """Two-level vote over (category, restored answer) pairs; None answers (unparsable) are skipped.

    Returns at most `n_attempts` distinct grids, best first (empty if nothing parsed).
    """
    grids: dict[tuple, np.ndarray] = {}
    counts_by_category: dict[str, Counter[tuple]] = {}
    for category, grid in predictions:
        if grid is not None:
            key = grid_key(grid)
            grids.setdefault(key, np.asarray(grid))
            counts_by_category.setdefault(category, Counter())[key] += 1
    n_categories: Counter[tuple] = Counter()
    total_votes: Counter[tuple] = Counter()
    in_identity: set[tuple] = set()
    for category, counts in counts_by_category.items():
        for key, count in counts.most_common(per_category):
            n_categories[key] += 1
            total_votes[key] += count
            if category == IDENTITY.name:
                in_identity.add(key)
    first_seen = {key: i for i, key in enumerate(grids)}
    ranked = sorted(
        n_categories,
        key=lambda k: (-n_categories[k], k not in in_identity, -total_votes[k], first_seen[k]),
    )
    return [grids[key] for key in ranked[:n_attempts]]


def is_solved(
    attempts_per_test: Sequence[Sequence[GridLike]], gold_outputs: Sequence[GridLike], *, k: int = N_ATTEMPTS
) -> bool:
    """pass@k: every test input's gold output is among its first `k` attempts (exact shape and colours)."""
    if len(attempts_per_test) != len(gold_outputs):
        raise ValueError(f"{len(attempts_per_test)} attempt lists for {len(gold_outputs)} test inputs")
    return all(
        any(grid_key(attempt) == grid_key(gold) for attempt in attempts[:k])
        for attempts, gold in zip(attempts_per_test, gold_outputs, strict=True)
    )
