"""Evaluation queries, the two-level vote and pass@2 scoring, on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from seal_runner.choices import EvalQueryRule
from seal_runner.domains.arc.augment import IDENTITY, reflect
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.voting import GEOMETRIC_VARIANTS, build_eval_queries, is_solved, vote


def demos(n: int, seed: int = 0) -> list[ARCExample]:
    rng = np.random.default_rng(seed)
    return [ARCExample(rng.integers(0, 10, size=(2, 3)), rng.integers(0, 10, size=(3, 2))) for _ in range(n)]


def test_queries_for_four_demos() -> None:
    d = demos(4)
    test_input = np.arange(6).reshape(2, 3)
    queries = build_eval_queries(d, test_input, np.random.default_rng(0))
    identity = [q for q in queries if q.category == "identity"]
    assert len(identity) == 4 * 2 and len(queries) == 8 + 5
    for i in range(4):  # leave-one-out subset i in its original order, then a different order
        subset = tuple(x for j, x in enumerate(d) if j != i)
        first, second = identity[2 * i], identity[2 * i + 1]
        assert first.demos == subset and second.demos != subset and set(second.demos) == set(subset)
        assert np.array_equal(first.test_input, test_input)
    assert [q.category for q in queries[8:]] == [t.name for t in GEOMETRIC_VARIANTS]
    for query in queries[8:]:
        assert np.array_equal(query.test_input, query.transform.forward(test_input))
        originals = tuple(ARCExample(query.restore(x.input), query.restore(x.output)) for x in query.demos)
        assert any(originals == q.demos for q in identity)


@pytest.mark.parametrize(("n_demos", "n_identity"), [(1, 1), (2, 2), (3, 6)])
def test_query_counts_for_few_demos(n_demos: int, n_identity: int) -> None:
    queries = build_eval_queries(demos(n_demos), np.zeros((2, 3), dtype=int), np.random.default_rng(1))
    assert len(queries) == n_identity + 5


def test_identical_demos_do_not_loop_forever() -> None:
    same = demos(1) * 3
    queries = build_eval_queries(same, np.zeros((2, 3), dtype=int), np.random.default_rng(0), variants=())
    assert len(queries) == 3 and all(q.transform is IDENTITY for q in queries)


def test_reference_queries_are_the_original_plus_shuffles_without_repeats() -> None:
    d = demos(4)
    rng = np.random.default_rng(3)
    queries = build_eval_queries(
        d, np.zeros((2, 3), dtype=int), rng, n_permutations=3, rule=EvalQueryRule.reference
    )
    identity = [q for q in queries if q.category == "identity"]
    assert len({q.key for q in queries}) == len(queries)  # no prompt is asked twice
    for i in range(4):  # every leave-one-out subset: the original order first, then up to 2 shuffles
        subset = tuple(x for j, x in enumerate(d) if j != i)
        mine = [q.demos for q in identity if set(q.demos) == set(subset)]
        assert mine[0] == subset and 1 <= len(mine) <= 3
    # 3 demos -> subsets of 2, which have only 2 orders: the 2 shuffles repeat and are dropped
    small = build_eval_queries(
        demos(3),
        np.zeros((2, 3), dtype=int),
        rng,
        n_permutations=3,
        variants=(),
        rule=EvalQueryRule.reference,
    )
    assert 3 <= len(small) <= 6 and len({q.key for q in small}) == len(small)


def test_reference_skips_a_variant_equal_to_an_earlier_query() -> None:
    # every grid is symmetric under flip_lr, so the flipped query is an identity query asked again
    mirror = [ARCExample([[1, 2, 1], [3, 4, 3]], [[v, 0, v]]) for v in (5, 6, 7)]
    test_input = np.array([[8, 9, 8]])
    for seed in range(5):
        ref = build_eval_queries(
            mirror, test_input, np.random.default_rng(seed), rule=EvalQueryRule.reference
        )
        ours = build_eval_queries(mirror, test_input, np.random.default_rng(seed))
        variants = [q.category for q in ref if q.category != "identity"]
        # flip_lr is always a repeat; rotate_180 = flip_ud and rotate_90 = transpose of such a grid,
        # so those are repeats when they were drawn from the same base query
        assert "flip_lr" not in variants and {"transpose", "flip_ud"} <= set(variants)
        assert len({q.key for q in ref}) == len(ref)
        assert [q.category for q in ours if q.category != "identity"] == [t.name for t in GEOMETRIC_VARIANTS]
    # constant grids look the same under every transform: only the identity queries are left
    flat = [ARCExample(np.full((2, 2), v), np.full((2, 2), v + 1)) for v in (1, 2, 3)]
    ref = build_eval_queries(flat, np.full((2, 2), 4), np.random.default_rng(0), rule=EvalQueryRule.reference)
    assert {q.category for q in ref} == {"identity"}


def test_variants_need_an_inverse() -> None:
    with pytest.raises(ValueError, match="no inverse"):
        build_eval_queries(
            demos(2), np.zeros((2, 3), dtype=int), np.random.default_rng(0), variants=[reflect(0, False)]
        )


def test_a_perfect_model_is_restored_to_the_gold_answer() -> None:
    rule = np.fliplr
    test_input = np.array([[1, 2, 3], [4, 5, 6]])
    predictions = []
    for query in build_eval_queries(demos(3), test_input, np.random.default_rng(2)):
        # the model sees the transformed task, whose rule is T . rule . T^-1, so it answers T(rule(x))
        answer = query.transform.forward(rule(query.restore(query.test_input)))
        predictions.append((query.category, query.restore(answer)))
    attempts = vote(predictions)
    assert len(attempts) == 1 and np.array_equal(attempts[0], rule(test_input))
    assert is_solved([attempts], [rule(test_input)])


A, B, C, D = (np.full((2, 2), v) for v in (1, 2, 3, 4))


def test_vote_counts_categories_before_votes() -> None:
    predictions = [("identity", A)] * 3 + [("identity", B), ("transpose", C), ("transpose", C)]
    predictions += [("flip_ud", C), ("rotate_90", None)]
    attempts = vote(predictions)
    # C is a top-3 candidate in 2 categories, A and B in 1 (identity) each; A outvotes B
    assert [a.tolist() for a in attempts] == [C.tolist(), A.tolist()]


def test_vote_keeps_only_top_three_per_category() -> None:
    predictions = [("identity", A)] * 4 + [("identity", B)] * 3 + [("identity", C)] * 2 + [("identity", D)]
    predictions += [("flip_lr", D), ("rotate_180", A)]
    attempts = vote(predictions, n_attempts=4)
    # D is 4th in identity (dropped there), so it counts for flip_lr only, like B and C count for identity only
    assert [a[0, 0] for a in attempts] == [1, 2, 3, 4]


def test_vote_ties_prefer_identity_then_votes_then_first_seen() -> None:
    predictions = [("transpose", A), ("identity", B), ("flip_ud", C), ("flip_ud", C), ("identity", D)]
    assert [a[0, 0] for a in vote(predictions)] == [2, 4]
    assert [a[0, 0] for a in vote([("flip_ud", A), ("transpose", C), ("transpose", C)])] == [3, 1]
    assert [a[0, 0] for a in vote([("flip_ud", A), ("transpose", C)])] == [1, 3]


def test_vote_with_nothing_parsed() -> None:
    assert vote([("identity", None), ("transpose", None)]) == []
    assert vote([]) == []


def test_vote_accepts_lists_and_distinguishes_shapes() -> None:
    attempts = vote(
        [("identity", [[1, 1, 1, 1]]), ("identity", [[1, 1], [1, 1]]), ("identity", [[1, 1], [1, 1]])]
    )
    assert [a.shape for a in attempts] == [(2, 2), (1, 4)]


def test_pass_at_2() -> None:
    gold = [[1, 2], [3, 4]]
    assert is_solved([[np.array(gold)]], [gold])
    assert is_solved([[A, gold]], [gold])
    assert not is_solved([[A, B, gold]], [gold])  # third attempt does not count
    assert is_solved([[A, B, gold]], [gold], k=3)
    assert not is_solved([[[[1, 2, 3, 4]]]], [gold])  # same cells, wrong shape
    assert not is_solved([[gold], [A]], [gold, B])  # every test input must be solved
    assert is_solved([[gold], [A, B]], [gold, B])
    assert not is_solved([[]], [gold])
    with pytest.raises(ValueError, match="attempt lists"):
        is_solved([[gold]], [gold, gold])
