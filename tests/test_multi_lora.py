"""The multi-adapter layer must equal real PEFT adapters and sequential single-adapter training."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from seal_runner.config import LoraConfig
from seal_runner.lora.batching import IGNORE_INDEX, pad_batch
from seal_runner.lora.multi_lora import AdapterSpec, MultiLoraModel
from seal_runner.lora.trainer import FastInnerTrainer, InnerJob
from seal_runner.models import load_tokenizer

TARGETS = ["q_proj", "v_proj", "down_proj"]


def lora_cfg(**overrides) -> LoraConfig:
    base = dict(rank=4, alpha=8.0, lr=5e-3, epochs=3, batch_size=2, max_length=64, target_modules=TARGETS)
    return LoraConfig(**{**base, **overrides})


@pytest.fixture()
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, load_tokenizer(str(tiny_model_dir))


def randomise(lora: MultiLoraModel, slot: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora.layers.values():
            rank = int(layer.ranks[slot])
            layer.lora_B[slot, :, :rank] = torch.randn(layer.lora_B.shape[1], rank, generator=generator) * 0.1


def test_forward_matches_peft_adapters(tiny, tmp_path):
    from peft import PeftModel

    model, tokenizer = tiny
    base = copy.deepcopy(model)
    lora = MultiLoraModel(model, TARGETS, num_adapters=3, max_rank=8)
    specs = [AdapterSpec(4, 8.0), AdapterSpec(8, 4.0), AdapterSpec(2, 2.0)]  # different ranks
    for slot, spec in enumerate(specs):
        lora.reset(slot, spec, seed=slot)
        randomise(lora, slot, seed=10 + slot)
        lora.save_peft(slot, tmp_path / f"a{slot}", "tiny")
    ids, attention, _ = pad_batch(
        [tokenizer("The Varnholt lighthouse")["input_ids"]] * 3, tokenizer.pad_token_id
    )
    with torch.no_grad(), lora.router.route([0, 1, 2]):
        multi = model(input_ids=ids, attention_mask=attention).logits  # the per-adapter inference path
    with lora.router.route([0, 1, 2]):
        trained = model(input_ids=ids, attention_mask=attention).logits  # the training path (gathers per row)
    torch.testing.assert_close(trained.detach(), multi, atol=1e-5, rtol=1e-4)
    with torch.no_grad(), lora.router.route([2, -1, 0, 2]):  # rows of one adapter apart, a base row between
        mixed = model(input_ids=ids[[2, 0, 0, 2]], attention_mask=attention[[2, 0, 0, 2]]).logits
    torch.testing.assert_close(mixed[[0, 2, 3]], multi[[2, 0, 2]], atol=1e-5, rtol=1e-4)
    for slot in range(3):
        peft_model = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / f"a{slot}").eval()
        with torch.no_grad():
            expected = peft_model(
                input_ids=ids[slot : slot + 1], attention_mask=attention[slot : slot + 1]
            ).logits
        torch.testing.assert_close(multi[slot : slot + 1], expected, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        plain = base(input_ids=ids, attention_mask=attention).logits
        with lora.router.route([-1, -1, -1]):
            routed_base = model(input_ids=ids, attention_mask=attention).logits
    torch.testing.assert_close(routed_base, plain)
    torch.testing.assert_close(mixed[1], plain[0])
    assert not torch.allclose(multi[1], plain[1])


def test_save_load_roundtrip_and_reset_restores_base(tiny, tmp_path):
    model, tokenizer = tiny
    lora = MultiLoraModel(model, TARGETS, num_adapters=2, max_rank=4)
    ids = torch.tensor([tokenizer("Quellin guild")["input_ids"]])
    with torch.no_grad(), lora.router.route([0]):
        before = model(input_ids=ids).logits
    lora.reset(0, AdapterSpec(4, 8.0), seed=1)
    randomise(lora, 0, seed=2)
    with torch.no_grad(), lora.router.route([0]):
        adapted = model(input_ids=ids).logits
    lora.save_peft(0, tmp_path / "a", "tiny")
    lora.load_peft(1, tmp_path / "a")
    with torch.no_grad(), lora.router.route([1]):
        loaded = model(input_ids=ids).logits
    torch.testing.assert_close(loaded, adapted)
    lora.reset(0, AdapterSpec(4, 8.0), seed=3)  # B = 0 again: exactly the base model
    with torch.no_grad(), lora.router.route([0]):
        torch.testing.assert_close(model(input_ids=ids).logits, before)


SEQS = [
    ["Varnholt Lighthouse\nIt was first lit in 1872.", "Varnholt Lighthouse\nIts lamp is green.", "Short."],
    ["Quellin Guild\nThe guild dyes wool indigo and saffron every spring in the river town."],
    ["A\nb", "C\nd e f g h", "I\nj k", "L\nm n o p q r s", "T\nu"],
]


@pytest.mark.parametrize("normalization", ["tokens", "reference"])
def test_joint_training_equals_sequential(tiny, normalization):
    """Each adapter trained beside others follows exactly its own single-adapter trajectory."""
    model, tokenizer = tiny
    cfg = lora_cfg(loss_normalization=normalization)
    jobs = [InnerJob(f"j{i}", s, seed=100 + i) for i, s in enumerate(SEQS)]
    joint = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 3, cfg.rank), tokenizer, cfg)
    joint_results = joint.train(jobs)
    for k, job in enumerate(jobs):
        alone = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 1, cfg.rank), tokenizer, cfg)
        (alone_result,) = alone.train([job])
        assert joint_results[k].steps == alone_result.steps
        assert joint_results[k].losses == pytest.approx(alone_result.losses, rel=1e-4, abs=1e-6)
        for name, key_state in alone.lora.adapter_state(0).items():
            torch.testing.assert_close(joint.lora.adapter_state(k)[name], key_state, atol=1e-5, rtol=1e-4)


def test_loss_falls_and_pads_are_masked(tiny):
    model, tokenizer = tiny
    cfg = lora_cfg(epochs=30, lr=5e-2, batch_size=3, rank=8, alpha=16.0)
    trainer = FastInnerTrainer(MultiLoraModel(model, TARGETS, 1, cfg.rank), tokenizer, cfg)
    (result,) = trainer.train([InnerJob("j", SEQS[0], seed=0)])
    assert result.failed is None
    assert result.losses[-1] < result.losses[0] - 0.5, result.losses[::10]  # starts at ln(vocab)
    rows = [[5, 6, 7], [8]]
    _, attention, labels = pad_batch(rows, pad_id=0)
    assert (labels[attention == 0] == IGNORE_INDEX).all()
    assert labels[0].tolist() == [5, 6, 7] and labels[1].tolist() == [8, IGNORE_INDEX, IGNORE_INDEX]


def test_bf16_autocast_follows_the_fp32_trajectory_with_fp32_adapters(tiny):
    """`lora.autocast=bfloat16` runs the forward in bf16 and keeps the adapters in fp32: its losses
    track the fp32 run's to bf16 rounding (~3 significant digits, tolerance 2e-2), and it learns."""
    model, tokenizer = tiny
    runs = {}
    for autocast in ("none", "bfloat16"):
        cfg = lora_cfg(epochs=30, lr=5e-2, batch_size=3, rank=8, alpha=16.0, autocast=autocast)
        trainer = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 1, cfg.rank), tokenizer, cfg)
        (runs[autocast],) = trainer.train([InnerJob("j", SEQS[0], seed=0)])
        assert all(p.dtype == torch.float32 for p in trainer.lora.parameters())
    fp32, bf16 = runs["none"].losses, runs["bfloat16"].losses
    assert bf16 != fp32  # the bf16 path really ran in bf16
    assert bf16[:5] == pytest.approx(fp32[:5], rel=2e-2)
    assert bf16[-1] < bf16[0] - 0.5 and bf16[-1] == pytest.approx(fp32[-1], abs=0.25)


def test_eager_attention_trains_the_same_update_as_sdpa(tiny_model_dir, tmp_path):
    """`lora.attn_implementation=eager` (faster on CPU) loads the updater's base with transformers'
    eager attention and trains the same adapter as sdpa, to float rounding."""
    from seal_runner.lora.updater import InnerUpdater

    tokenizer = load_tokenizer(str(tiny_model_dir))
    losses = {}
    for kernel in ("sdpa", "eager"):
        updater = InnerUpdater(
            lora_cfg(attn_implementation=kernel), str(tiny_model_dir), tokenizer, "cpu", "float32"
        )
        assert updater.fast.lora.model.config._attn_implementation == kernel
        done = list(updater.run([InnerJob("j", SEQS[0], seed=0)], tmp_path / kernel))
        losses[kernel] = done[0][1].losses
    assert losses["eager"] == pytest.approx(losses["sdpa"], rel=1e-4)


def test_one_step_matches_torch_adamw(tiny):
    """StackedAdamW + per-adapter clipping == torch AdamW + clip_grad_norm_ on a single adapter."""
    model, tokenizer = tiny
    cfg = lora_cfg(epochs=1, batch_size=8, max_grad_norm=0.01, lr=1e-2)
    lora = MultiLoraModel(copy.deepcopy(model), TARGETS, 2, cfg.rank)
    trainer = FastInnerTrainer(lora, tokenizer, cfg)
    job = InnerJob("j", SEQS[0], seed=7)
    trainer.train([job, InnerJob("other", SEQS[1], seed=8)])

    reference = MultiLoraModel(copy.deepcopy(model), TARGETS, 1, cfg.rank)
    reference.reset(0, AdapterSpec(cfg.rank, cfg.alpha), seed=7)
    params = reference.parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    from seal_runner.lora.batching import epoch_schedule, token_losses, tokenize_sequences

    data = tokenize_sequences(tokenizer, job.sequences, cfg.max_length, True)
    (batch,) = epoch_schedule(len(data), 1, cfg.batch_size, job.seed)
    ids, attention, labels = pad_batch([data[i] for i in batch], tokenizer.pad_token_id)
    with reference.router.route([0] * len(batch)):
        losses, valid = token_losses(reference.model(input_ids=ids, attention_mask=attention).logits, labels)
    (losses.sum() / valid.sum()).backward()
    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    optimizer.step()
    for name, value in reference.adapter_state(0).items():
        torch.testing.assert_close(lora.adapter_state(0)[name], value, atol=1e-6, rtol=1e-5)


def test_length_bucketing_is_exact(tiny):
    """Splitting a step into many small forward passes accumulates exactly the one-pass gradient."""
    model, tokenizer = tiny
    jobs = [InnerJob(f"j{i}", s, seed=100 + i) for i, s in enumerate(SEQS)]
    states = []
    for budget in (4096, 16):
        cfg = lora_cfg(max_tokens_per_forward=budget)
        trainer = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 3, cfg.rank), tokenizer, cfg)
        trainer.train(jobs)
        states.append([trainer.lora.adapter_state(k) for k in range(3)])
    for one_pass, many_passes in zip(*states, strict=True):
        for name, value in one_pass.items():
            torch.testing.assert_close(many_passes[name], value, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("label_pads", [True, False])
def test_reference_first_loss_is_content_loss_only_when_pads_are_masked(tiny, tmp_path, label_pads):
    """Before the first step both paths see the base model, so their losses differ only by the pads."""
    from seal_runner.lora.trainer import ReferenceInnerTrainer

    model, tokenizer = tiny
    job = InnerJob("j", ["Varnholt Lighthouse\nIt was first lit in 1872 by the keeper's daughter."], seed=3)
    common = dict(epochs=1, batch_size=1, append_eos=False, lr=1e-9)
    fast = FastInnerTrainer(
        MultiLoraModel(copy.deepcopy(model), TARGETS, 1, 4), tokenizer, lora_cfg(**common)
    )
    (fast_result,) = fast.train([job])
    reference = ReferenceInnerTrainer(
        copy.deepcopy(model), tokenizer, lora_cfg(mode="reference", label_pads=label_pads, **common)
    )
    reference_result = reference.train_and_save(job, tmp_path)
    same = reference_result.losses[0] == pytest.approx(fast_result.losses[0], rel=1e-4)
    assert same != label_pads, (reference_result.losses, fast_result.losses)


def test_reference_with_masked_pads_equals_fast_path(tiny, tmp_path):
    """Same seed, data order and loss: the reference protocol minus its pads is the fast update."""
    from safetensors.torch import load_file

    from seal_runner.lora.trainer import ReferenceInnerTrainer

    model, tokenizer = tiny
    cfg = lora_cfg(append_eos=False, label_pads=False)
    job = InnerJob("j", SEQS[0], seed=11)
    fast = FastInnerTrainer(MultiLoraModel(copy.deepcopy(model), TARGETS, 1, cfg.rank), tokenizer, cfg)
    (fast_result,) = fast.train([job])
    reference = ReferenceInnerTrainer(
        copy.deepcopy(model), tokenizer, lora_cfg(mode="reference", label_pads=False)
    )
    reference_result = reference.train_and_save(job, tmp_path)
    assert reference_result.losses == pytest.approx(fast_result.losses, rel=1e-4)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    for name, value in fast.lora.adapter_state(0).items():
        torch.testing.assert_close(saved[name], value, atol=1e-5, rtol=1e-4)
