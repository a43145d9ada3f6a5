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


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_init_seed_gives_every_adapter_one_starting_A(tiny, tmp_path):
    """lora.init_seed: every job starts from the A that seed draws (the reference's ARC TTT restores one
    initial A before each update), on the fast and the reference path alike; B starts at zero and the
    data order still follows each job's own seed. Unset, each job draws its own A."""
    from safetensors.torch import load_file

    from seal_runner.lora.trainer import ReferenceInnerTrainer

    model, tokenizer = tiny
    rows = prompt_completion_rows(tokenizer, [("[[1 2]] -> ", "[[2 1]]#")])
    jobs = [InnerJob(f"j{seed}", [], seed=seed, rows=rows, epochs=0) for seed in (1, 2, 3)]

    def starting_A(**overrides) -> list[dict]:
        trainer = FastInnerTrainer(
            MultiLoraModel(copy.deepcopy(model), TARGETS, 3, 4), tokenizer, cfg(**overrides)
        )
        trainer.train(jobs)
        return [{n: v for n, v in trainer.lora.adapter_state(k).items() if "lora_A" in n} for k in range(3)]

    shared = starting_A(init_seed=7)
    assert all(torch.equal(shared[0][n], other[n]) for other in shared[1:] for n in shared[0])
    own = starting_A()
    assert not any(torch.equal(own[0][n], own[1][n]) for n in own[0])
    assert all(torch.equal(own[0][n], starting_A(init_seed=1)[0][n]) for n in own[0])  # job 0's seed is 1
    reference = ReferenceInnerTrainer(
        copy.deepcopy(model), tokenizer, cfg(init_seed=7, epochs=0, batch_size=1)
    )
    reference.train_and_save(InnerJob("ref", ["A\nb c"], seed=5), tmp_path / "ref")
    saved = load_file(str(tmp_path / "ref" / "adapter_model.safetensors"))
    assert all(torch.equal(saved[n], shared[0][n]) for n in shared[0])
