"""Per-job inner-loop settings (ARC self-edits): label-masked rows, own lr and epochs, cosine schedule."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from seal_runner.config import LoraConfig
from seal_runner.lora.batching import IGNORE_INDEX, TrainRow
from seal_runner.lora.multi_lora import MultiLoraModel
from seal_runner.lora.optim import cosine_schedule, linear_schedule, lr_schedule
from seal_runner.lora.trainer import FastInnerTrainer, InnerJob
from seal_runner.models import load_tokenizer

TARGETS = ["q_proj", "v_proj", "gate_proj", "down_proj", "up_proj"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, load_tokenizer(str(tiny_model_dir))


def cfg(**overrides) -> LoraConfig:
    base = dict(
        rank=4,
        alpha=8.0,
        lr=5e-3,
        epochs=2,
        batch_size=2,
        max_length=64,
        target_modules=TARGETS,
        lr_schedule="cosine",
        warmup_steps=2,
    )
    return LoraConfig(**{**base, **overrides})


def prompt_completion_rows(tokenizer, pairs: list[tuple[str, str]]) -> list[TrainRow]:
    rows = []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        rows.append(TrainRow(p + c, [IGNORE_INDEX] * len(p) + c))
    return rows


def jobs_for(tokenizer) -> list[InnerJob]:
    masked = prompt_completion_rows(
        tokenizer, [("[[1 2]] -> ", "[[2 1]]#"), ("[[3 4 5]] -> ", "[[5 4 3]]#"), ("[[7]] -> ", "[[7]]#")]
    )
    return [
        InnerJob("text", ["A\nb c d", "E\nf", "G\nh i j k"], seed=1),  # config lr and epochs
        InnerJob("masked", [], seed=2, rows=masked, lr=2e-2, epochs=4),
        InnerJob("short", [], seed=3, rows=masked[:2], lr=1e-3, epochs=1),
        InnerJob("untrained", [], seed=4, rows=masked, lr=1e-2, epochs=0),
    ]


def test_per_job_lr_epochs_and_masks_equal_training_alone(tiny):
    """Jobs of different lengths trained together: each adapter equals its single-adapter training,
    so an adapter whose schedule ended is neither stepped nor disturbed by the others."""
    model, tokenizer = tiny
    jobs = jobs_for(tokenizer)
    joint = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 4, 4), tokenizer, cfg())
    joint_results = joint.train(jobs)
    assert [r.steps for r in joint_results] == [2 * 2, 4 * 2, 1, 0]
    for k, job in enumerate(jobs):
        alone = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 1, 4), tokenizer, cfg())
        (result,) = alone.train([job])
        assert joint_results[k].losses == pytest.approx(result.losses, rel=1e-4, abs=1e-6)
        for name, value in alone.lora.adapter_state(0).items():
            torch.testing.assert_close(joint.lora.adapter_state(k)[name], value, atol=1e-5, rtol=1e-4)
    untrained = joint.lora.adapter_state(3)
    assert all(not v.any() for n, v in untrained.items() if "lora_B" in n), "0 epochs keeps B = 0"
    trained = joint.lora.adapter_state(1)
    assert any(v.any() for n, v in trained.items() if "lora_B" in n)


def test_unlabelled_tokens_give_no_update(tiny):
    """Only labelled positions carry loss: a row with no labels leaves the adapter at B = 0, and the
    loss of a masked row is the completion's alone."""
    model, tokenizer = tiny
    (row,) = prompt_completion_rows(tokenizer, [("[[1 2]] -> ", "[[2 1]]#")])
    blind = TrainRow(row.input_ids, [IGNORE_INDEX] * len(row.labels))
    trainer = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 2, 4), tokenizer, cfg())
    results = trainer.train(
        [InnerJob("blind", [], seed=0, rows=[blind]), InnerJob("seen", [], seed=0, rows=[row])]
    )
    assert all(not v.any() for n, v in trainer.lora.adapter_state(0).items() if "lora_B" in n)
    assert results[0].losses == [0.0] * results[0].steps
    assert any(v.any() for n, v in trainer.lora.adapter_state(1).items() if "lora_B" in n)
    assert row.num_targets == len(tokenizer("[[2 1]]#", add_special_tokens=False)["input_ids"])


def test_schedules_match_transformers():
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    for factory, ours in (
        (get_cosine_schedule_with_warmup, cosine_schedule),
        (get_linear_schedule_with_warmup, linear_schedule),
    ):
        optimizer = torch.optim.SGD([param], lr=1.0)
        scheduler = factory(optimizer, 11, 40)
        for step in range(40):
            assert optimizer.param_groups[0]["lr"] == pytest.approx(ours(step, 40, 11), abs=1e-9)
            optimizer.step()
            scheduler.step()
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_schedule("exponential")
