"""Per-prompt seeds on the HF engine: a sampled completion depends only on (prompt, seed, adapter,
sampling), not on the other prompts of its batch, its position in it, or the batch size."""

from __future__ import annotations

import pytest
import torch

from seal_runner.engines.base import Sampling
from seal_runner.engines.hf_engine import HFEngine, RowSeededSampler

HOT = Sampling(temperature=2.0, top_p=1.0, max_tokens=12)
PROMPTS = [
    "The capital of France is",
    "Write a short poem about the sea and the wind that moves it",
    "1, 2, 3,",
    "Question: who wrote Hamlet?\nAnswer:",
]


def engine(model_dir, batch_size: int) -> HFEngine:
    return HFEngine(str(model_dir), dtype="float32", device="cpu", batch_size=batch_size)


def test_a_prompt_samples_the_same_alone_and_anywhere_in_any_batch(tiny_model_dir):
    target, seed = PROMPTS[2], 7
    alone = engine(tiny_model_dir, batch_size=1).generate([target], HOT, seeds=[seed])[0]
    # longer prompts around it: it is left-padded, at position 1 of a batch of 3, then 2 of a batch of 4
    others = [PROMPTS[1], PROMPTS[3], PROMPTS[0]]
    in_three = engine(tiny_model_dir, batch_size=3).generate(
        [others[0], target, *others[1:]], HOT, seeds=[11, seed, 12, 13]
    )[1]
    in_four = engine(tiny_model_dir, batch_size=4).generate(
        [others[2], others[1], target, others[0]], HOT, seeds=[21, 22, seed, 23]
    )[2]
    assert alone.num_tokens > 0
    assert in_three == alone and in_four == alone


def test_different_seeds_sample_different_completions_and_a_repeated_seed_the_same(tiny_model_dir):
    seeds = [0, 1, 2, 3, 4, 0]
    out = [c.text for c in engine(tiny_model_dir, batch_size=6).generate([PROMPTS[0]] * 6, HOT, seeds=seeds)]
    assert len(set(out[:5])) == 5
    assert out[5] == out[0]


def test_without_seeds_each_row_is_seeded_from_the_engine_seed(tiny_model_dir):
    hf = engine(tiny_model_dir, batch_size=2)
    assert hf.generate(PROMPTS[:3], HOT) == hf.generate(PROMPTS[:3], HOT, seeds=[0, 1, 2])


def test_temperature_zero_is_greedy_and_ignores_seeds(tiny_model_dir):
    hf = engine(tiny_model_dir, batch_size=2)
    greedy = Sampling(temperature=0.0, max_tokens=8)
    got = hf.generate(PROMPTS[:2], greedy, seeds=[3, 4])
    assert got == hf.generate(PROMPTS[:2], greedy, seeds=[5, 6])
    for prompt, completion in zip(PROMPTS[:2], got, strict=True):
        encoded = hf.tokenizer(prompt, return_tensors="pt")
        out = hf.model.generate(
            **encoded, max_new_tokens=8, do_sample=False, pad_token_id=hf.tokenizer.pad_token_id
        )
        new = out[0, encoded.input_ids.shape[1] :].tolist()
        eos = hf.tokenizer.eos_token_id
        tokens = new[: new.index(eos)] if eos in new else new
        assert completion.text == hf.tokenizer.decode(tokens, skip_special_tokens=True)
    # a top_p so small that only the most likely token survives: sampling is greedy whatever the seed
    assert hf.generate(PROMPTS[:2], Sampling(2.0, 1e-6, 8), seeds=[3, 4]) == got


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_the_sampler_draws_from_softmax_of_logits_over_temperature_within_top_p(top_p):
    """Gumbel-max over many seeded rows matches the tempered (and top-p truncated) distribution."""
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    temperature, rows = 1.5, 4000
    sampler = RowSeededSampler(range(rows), temperature, top_p, torch.device("cpu"))
    picks = sampler(torch.zeros(rows, 1, dtype=torch.long), logits.expand(rows, -1)).argmax(dim=-1)
    probs = (logits / temperature).softmax(dim=-1)
    kept = probs.cumsum(dim=-1) - probs < top_p  # logits are sorted, so this is top-p's kept set
    expected = torch.where(kept, probs, 0.0) / probs[kept].sum()
    observed = torch.bincount(picks, minlength=len(logits)).float() / rows
    assert torch.all(observed[~kept] == 0)
    assert torch.allclose(observed, expected, atol=0.03)
