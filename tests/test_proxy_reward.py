"""The no-update proxy reward: its likelihood against HF's own loss, and the rank statistics on
hand-made numbers (ties included)."""

from __future__ import annotations

import math

import pytest

from seal_runner.domains.knowledge.data import QA, Article
from seal_runner.domains.knowledge.proxy import (
    answer_pairs,
    average_ranks,
    inner_cost_per_candidate,
    kendall_tau_b,
    proxy_rewards,
    rank_agreement,
    spearman,
)
from seal_runner.likelihood import AnswerLikelihood
from seal_runner.prompts import PromptFormatter

ARTICLE = Article(
    0,
    "Foxholm",
    "Foxholm is a board game invented in 1953 by Oswin Pratt.",
    (QA("Who invented Foxholm?", "Oswin Pratt"), QA("When was Foxholm invented?", "1953")),
)


def test_ranks_and_correlations_on_hand_made_numbers():
    assert average_ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    # tau-b with a tie in y: pairs (1,2) tied in y, (1,3) and (2,3) concordant
    assert kendall_tau_b([1, 2, 3], [0, 0, 1]) == pytest.approx(2 / math.sqrt(3 * 2))
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_rank_agreement_within_context_and_as_a_selector():
    records = [
        {"context": 0, "sample": 0, "reward": 0.2, "proxy": -3.0},
        {"context": 0, "sample": 1, "reward": 0.6, "proxy": -1.0},
        {"context": 0, "sample": 2, "reward": 0.4, "proxy": -2.0},
        {"context": 1, "sample": 0, "reward": 0.8, "proxy": -0.5},
        {"context": 1, "sample": 1, "reward": 1.0, "proxy": -0.9},
        {"context": 2, "sample": 0, "reward": 0.0, "proxy": -4.0},  # all tied: not ranked
        {"context": 2, "sample": 1, "reward": 0.0, "proxy": -5.0},
    ]
    a = rank_agreement(records, "proxy")
    assert a["contexts"] == 3 and a["contexts_ranked"] == 2
    assert a["within_context_spearman"] == pytest.approx((1.0 - 1.0) / 2)
    assert a["pick_is_best"] == pytest.approx(2 / 3)  # context 1 picks the worse one
    assert a["reward_of_pick"] == pytest.approx((0.6 + 0.8 + 0.0) / 3)
    assert a["reward_of_best"] == pytest.approx((0.6 + 1.0 + 0.0) / 3)
    assert inner_cost_per_candidate(
        [
            {"key": "c0003-s1-i0", "seconds": 2.0, "train_tokens": 10},
            {"key": "c0003-s1-i1", "seconds": 3.0, "train_tokens": 5},
            {"key": "c0004-s0-i0", "failed": "no sequences"},
        ]
    ) == {(3, 1): {"seconds": 5.0, "train_tokens": 15}, (4, 0): {"seconds": 0.0, "train_tokens": 0}}


def test_answer_likelihood_matches_the_models_own_loss(tiny_model_dir):
    import torch

    from seal_runner.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir), dtype="float32", device="cpu")
    formatter = PromptFormatter(tokenizer, chat=True)
    pairs = answer_pairs(formatter, ARTICLE, "Oswin Pratt invented Foxholm in 1953.", topic_prefix=True)
    assert pairs[0][0].count("Oswin Pratt invented Foxholm") == 1 and pairs[0][1] == "Oswin Pratt"
    scores = AnswerLikelihood(model, tokenizer, batch_size=2)(pairs)
    for (prompt, answer), score in zip(pairs, scores, strict=True):
        p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + a])
        labels = torch.tensor([[-100] * len(p) + a])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        assert score == pytest.approx(-loss, abs=1e-4)  # padding in the batch changes nothing

    candidates = [
        {"context": 0, "sample": s, "title": "Foxholm", "completion": text, "reward": r}
        for s, (text, r) in enumerate([("Oswin Pratt invented Foxholm in 1953.", 0.5), ("Cats purr.", 0.0)])
    ]
    scorer = AnswerLikelihood(model, tokenizer)
    records = proxy_rewards(scorer, formatter, candidates, {0: ARTICLE})
    assert [r["sample"] for r in records] == [0, 1]
    assert records[0]["proxy"] == pytest.approx(sum(scores) / 2, abs=1e-5)
    assert all(r["seconds"] > 0 and r["cpu_seconds"] > 0 for r in records)
    # the shared no-self-edit reference is spread over the candidates: nothing counted twice or lost
    assert sum(r["tokens_forwarded"] for r in records) == pytest.approx(scorer.tokens_forwarded)
    assert records[0]["tokens_forwarded"] > records[1]["tokens_forwarded"]  # the longer self-edit
    with pytest.raises(ValueError, match="is 'Other'"):
        proxy_rewards(
            AnswerLikelihood(model, tokenizer), formatter, [{**candidates[0], "title": "Other"}], {0: ARTICLE}
        )
