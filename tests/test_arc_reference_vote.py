"""The reference repository's vote (few-shot/arclib/voting.py), ported as `domain.voting=reference`.

The repository publishes no saved predictions, so these are hand-made cases; each expected result was
also produced by the reference's own `vote` on the same answers (inverters Transpose(), Flip(0), ...).
"""

from __future__ import annotations

import numpy as np

from seal_runner.domains.arc.reference_vote import reference_vote
from seal_runner.domains.arc.voting import vote

A, B, C, D = (np.full((2, 2), v) for v in (1, 2, 3, 4))


def values(attempts: list[np.ndarray]) -> list[int]:
    return [int(a[0, 0]) for a in attempts]


def test_a_unanimous_category_fills_all_three_slots() -> None:
    predictions = [("identity", A)] * 4 + [("identity", B)] * 2 + [("identity", C)]
    predictions += [("transpose", D)] * 2 + [("flip_ud", B)]
    # reference: all -> (A, B, D), identity -> (A, B, C), transpose -> (D, D, D), flip_ud -> (B, B, B);
    # pooled B 5, D 4, A 2, C 1
    assert values(reference_vote(predictions)) == [2, 4]
    # ours: B is in 2 categories' top 3, then identity's A (4 votes) beats transpose's D
    assert values(vote(predictions)) == [2, 1]


def test_tied_second_and_third_go_to_the_one_identity_answered_more() -> None:
    one = [np.array([[v]]) for v in (1, 2, 3)]
    predictions = [("identity", one[1]), ("transpose", one[1])]
    predictions += [("flip_ud", one[i]) for i in (1, 0, 0, 1, 2, 1)]
    # pooled: 2 x8, 1 x2, 3 x2; identity answered neither 1 nor 3, so the 3rd replaces the 2nd
    assert values(reference_vote(predictions)) == [2, 1]
    predictions.append(("identity", one[2]))  # now identity answered 3 once: it stays 2nd
    assert values(reference_vote(predictions)) == [2, 3]


def test_row_majority_fills_a_category_with_two_tied_answers() -> None:
    top = np.array([[1, 1], [0, 0]])
    bottom = np.array([[0, 0], [1, 1]])
    attempts = reference_vote([("identity", top), ("identity", bottom)])
    # two answers tied 1:1: the reference's tie order (a Python set of row tuples, then argsort) picks
    # `bottom` as both 1st and 2nd, so row/column-majority fillers take the 2nd and 3rd slots and pool
    # with `bottom`; `top` ends up in neither attempt (the reference's own vote gives the same)
    assert [a.tolist() for a in attempts] == [bottom.tolist(), bottom.tolist()]


def test_transforms_outside_the_reference_list_count_in_all_only() -> None:
    predictions = [("rotate_270", A)] * 3 + [("identity", B)]
    # all -> (A, B, A); identity -> (B, B, B): pooled B 4, A 2
    assert values(reference_vote(predictions)) == [2, 1]
    predictions = [("rotate_90", A)] * 3 + [("identity", B)]  # rotate_90 is a category there
    assert values(reference_vote(predictions)) == [1, 2]


def test_one_answer_is_both_attempts_and_nothing_parsed_is_no_attempt() -> None:
    assert values(reference_vote([("identity", A), ("transpose", None)])) == [1, 1]
    assert reference_vote([("identity", None)]) == [] and reference_vote([]) == []
