"""stage=cpt's reference mode (the reference's padded CPT update) on the tiny random Llama, and the
paper preset that selects it."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_config
from hydra.errors import HydraException

from seal_runner.choices import LoraMode
from seal_runner.config import CPTConfig
from seal_runner.errors import InputError
from seal_runner.lora.batching import IGNORE_INDEX, tokenize_sequences
from seal_runner.models import load_causal_lm, load_tokenizer
from seal_runner.outer import completion_loss, pad_examples, train_on_texts

TEXTS = [
    "Eiffel Tower\nThe tower was finished in 1889.",
    "Eiffel Tower\nIt is made of wrought iron and stands in Paris.",
    "Eiffel Tower\nThe Eiffel Tower is a lattice tower on the Champ de Mars in Paris.",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pad_examples_labels_pads_only_when_asked():
    examples = [([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([8, 9], [8, 9])]
    ids, attention, labels = pad_examples(examples, pad_id=0, pad_to=5)
    assert ids.tolist() == [[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]
    assert attention.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert labels.tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX], [8, 9] + [IGNORE_INDEX] * 3]
    _, _, labelled = pad_examples(examples, pad_id=0, pad_to=5, label_pads=True)
    assert labelled.tolist() == [[IGNORE_INDEX, 6, 7, 0, 0], [8, 9, 0, 0, 0]]  # a prompt mask stays
    longest, _, _ = pad_examples(examples, pad_id=0)
    assert longest.shape == (2, 3)


def test_reference_mode_loss_is_the_reference_trainers(tiny_model_dir):
    """The rows and loss of knowledge-incorporation/src/inner/TTT_server.py: `tokenizer(seq,
    truncation=True, max_length=L, padding="max_length")` with pad = EOS, labels = the padded ids,
    the model's own loss; ours is the mean over rows x (L - 1) positions."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.pad_token = tokenizer.eos_token  # the reference's pad
    length = 24
    model = load_causal_lm(str(tiny_model_dir), device="cpu", dtype="float32")
    rows = [tokenizer(t, truncation=True, max_length=length, padding="max_length") for t in TEXTS]
    ref_ids = torch.tensor([r["input_ids"] for r in rows])
    ref_mask = torch.tensor([r["attention_mask"] for r in rows])
    ids = tokenize_sequences(tokenizer, TEXTS, length, append_eos=False)
    input_ids, attention, labels = pad_examples(
        [(x, x) for x in ids], tokenizer.eos_token_id, pad_to=length, label_pads=True
    )
    assert torch.equal(input_ids, ref_ids) and torch.equal(attention, ref_mask)
    assert (attention == 0).any() and (labels != IGNORE_INDEX).all()  # pads exist and carry a label
    with torch.no_grad():
        reference = model(input_ids=ref_ids, attention_mask=ref_mask, labels=ref_ids.clone()).loss
        logits = model(input_ids=input_ids, attention_mask=attention).logits
        ours, count = completion_loss(logits, labels)
    assert count == len(TEXTS) * (length - 1)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_train_on_texts_in_reference_mode(tiny_model_dir, tmp_path):
    cfg = CPTConfig(rank=4, alpha=8.0, epochs=1, batch_size=2, grad_accum=1, max_length=32, mode="reference")
    stats = train_on_texts(str(tiny_model_dir), TEXTS, tmp_path / "model", cfg, device="cpu")
    assert stats["mode"] == "reference" and stats["steps"] == 2 and stats["texts"] == 3
    # every step's micro-batch is labelled at every one of its rows x 31 positions
    assert stats["label_tokens"] == 3 * 31
    assert json.loads((tmp_path / "model" / "sft_done.json").read_text())["mode"] == "reference"
    with pytest.raises(InputError, match="cpt.max_length"):
        train_on_texts(
            str(tiny_model_dir), TEXTS, tmp_path / "other", CPTConfig(mode="reference", max_length=None)
        )


def test_paper_cpt_preset_trains_as_the_reference(hydra_ctx):
    cfg = compose_config(["experiment=paper/knowledge_cpt"])
    assert cfg.cpt.mode == LoraMode.reference and cfg.cpt.label_pads and cfg.cpt.max_length == 2048
    assert (cfg.cpt.lr, cfg.cpt.batch_size, cfg.cpt.grad_accum, cfg.cpt.epochs) == (1e-3, 4, 2, 3)
    assert not cfg.cpt.full_finetune and not cfg.domain.split_newlines
    default = compose_config([])
    assert default.cpt.mode == LoraMode.fast and default.cpt.dtype is None
    assert compose_config(["cpt.full_finetune=true", "cpt.dtype=float32"]).cpt.dtype == "float32"
    with pytest.raises(HydraException, match="mode"):
        compose_config(["cpt.mode=padded"])
