"""Teacher-forced gold-answer likelihood under many adapters at once (HFEngine.answer_logprobs), the
score behind knowledge's `likelihood` reward and held-out `answer_logprob`."""

from __future__ import annotations

import pytest
import torch

from seal_runner.domains.knowledge.data import QA, Article
from seal_runner.domains.knowledge.proxy import answer_pairs
from seal_runner.engines.base import LoraAdapter
from seal_runner.likelihood import AnswerLikelihood
from seal_runner.prompts import PromptFormatter

ARTICLE = Article(
    0,
    "Foxholm",
    "Foxholm is a lamp invented by Oswin Pratt in 1953.",
    (QA("Who invented Foxholm?", "Oswin Pratt"), QA("When was Foxholm invented?", "1953")),
)


def save_random_adapter(model_dir, path, seed: int):
    """A PEFT LoRA adapter on q/v with random (non-zero) A and B, so it changes the model's output."""
    from peft import LoraConfig, get_peft_model

    from seal_runner.models import load_causal_lm

    torch.manual_seed(seed)
    model = get_peft_model(
        load_causal_lm(str(model_dir), dtype="float32", device="cpu"),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(path)
    return path


def test_engine_scores_each_pair_under_its_own_adapter_as_peft_does(tiny_model_dir, tmp_path):
    from peft import PeftModel

    from seal_runner.engines.hf_engine import HFEngine
    from seal_runner.models import load_causal_lm

    paths = [save_random_adapter(tiny_model_dir, tmp_path / f"a{i}", seed=i) for i in range(3)]
    adapters = [LoraAdapter(f"a{i}", str(p)) for i, p in enumerate(paths)]
    engine = HFEngine(str(tiny_model_dir), dtype="float32", device="cpu", max_loras=2, max_lora_rank=4)
    formatter = PromptFormatter(engine.tokenizer, chat=True)
    pairs = answer_pairs(formatter, ARTICLE, None, topic_prefix=True)
    # base and three adapters interleaved; three adapters over two slots forces a second chunk
    units = [None, *adapters]
    got = engine.answer_logprobs([p for _ in units for p in pairs], [u for u in units for _ in pairs])
    got = [got[i : i + len(pairs)] for i in range(0, len(got), len(pairs))]

    base = load_causal_lm(str(tiny_model_dir), dtype="float32", device="cpu")
    expected = [AnswerLikelihood(base, engine.tokenizer)(pairs)]
    for path in paths:
        peft = PeftModel.from_pretrained(
            load_causal_lm(str(tiny_model_dir), dtype="float32", device="cpu"), path
        )
        expected.append(AnswerLikelihood(peft.eval(), engine.tokenizer)(pairs))
    for row, want in zip(got, expected, strict=True):
        assert row == pytest.approx(want, abs=1e-4)
    assert len({round(r[0], 3) for r in got}) == 4  # every adapter really changed the score


def test_rows_and_router_come_together(tiny_model_dir):
    from seal_runner.models import load_causal_lm, load_tokenizer

    scorer = AnswerLikelihood(
        load_causal_lm(str(tiny_model_dir), device="cpu"), load_tokenizer(str(tiny_model_dir))
    )
    with pytest.raises(ValueError, match="need a router"):
        scorer([("Q: who?", "Oswin")], rows=[0])
