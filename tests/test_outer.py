"""Outer-loop SFT (TRL's SFTTrainer) on the tiny random Llama: label masks, learning, merge fidelity,
atomic save, resume, two processes; and stage=cpt's hand-written loop."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seal_runner import outer
from seal_runner.errors import InputError
from seal_runner.lora.batching import IGNORE_INDEX, pad_batch
from seal_runner.models import load_causal_lm, load_tokenizer
from seal_runner.outer import (
    DONE_MARKER,
    SFTConfig,
    completion_loss,
    merge_and_save,
    per_process_batches,
    step_groups,
    train_lora,
    train_sft,
    wrap_lora,
)

COMPLETIONS = [
    "The tower was finished in 1889.",
    "Implications:\n1. Paris hosts the tower.\n2. It is made of iron.",
    "Rivers flow to the sea.",
    "Question 1: Who built it?\nAnswer: Eiffel's company.",
]
FAST = SFTConfig(rank=16, alpha=32.0, lr=1e-2, epochs=10, batch_size=2, grad_accum=1, max_length=128)


def chat_prompt(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def pairs(tokenizer) -> list[tuple[str, str]]:
    return [(chat_prompt(tokenizer, f"Passage {i}: read and edit."), c) for i, c in enumerate(COMPLETIONS)]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, pairs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sft") / "policy"
    return out, train_sft(str(tiny_model_dir), pairs, out, FAST)


def prepared(model_dir, pairs: list[tuple[str, str]], max_length: int | None) -> list[dict]:
    """The rows TRL's SFTTrainer trains on (input_ids, labels) for these pairs, as `fit_sft` builds
    it; nothing trains."""
    from datasets import Dataset
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    args = TRLConfig(
        output_dir=str(Path(model_dir) / "unused"),
        max_length=max_length,
        completion_only_loss=True,
        report_to="none",
        use_cpu=True,
        bf16=False,
    )
    trainer = SFTTrainer(
        model=load_causal_lm(str(model_dir), device="cpu"),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs]),
        processing_class=load_tokenizer(str(model_dir)),
    )
    return list(trainer.train_dataset)


def test_labels_mask_exactly_the_prompt(tiny_model_dir, tokenizer, pairs):
    """The completion is labelled from the first token after the prompt as the engines tokenise it
    (so the policy learns from the prefix it sampled from), through EOS; the prompt never."""
    for (prompt, completion), row in zip(pairs, prepared(tiny_model_dir, pairs, 128), strict=True):
        input_ids, labels = row["input_ids"], row["labels"]
        prompt_ids = tokenizer(prompt)["input_ids"]
        assert input_ids[: len(prompt_ids)] == prompt_ids
        assert labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
        labelled = labels[len(prompt_ids) :]
        assert IGNORE_INDEX not in labelled and labelled == input_ids[len(prompt_ids) :]
        assert labelled[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(labelled) == completion + tokenizer.eos_token


def test_long_completion_truncated_long_prompt_dropped(tiny_model_dir, tokenizer, pairs):
    prompt, completion = pairs[1]
    n_prompt = len(tokenizer(prompt)["input_ids"])
    (row,) = prepared(tiny_model_dir, [pairs[1]], n_prompt + 3)
    assert len(row["input_ids"]) == n_prompt + 3
    assert (
        sum(label != IGNORE_INDEX for label in row["labels"]) == 3
        and row["labels"][-1] != tokenizer.eos_token_id
    )
    assert prepared(tiny_model_dir, [pairs[1]], n_prompt) == []
    assert len(prepared(tiny_model_dir, pairs + [("word " * 200, "x")], 128)) == 4


def test_max_length_none_keeps_every_example_whole(tiny_model_dir, tokenizer):
    """`sft.max_length=null` (the reference: its limit is the longest example) cuts nothing, where
    2048 cuts a long self-edit's tail and EOS; short examples are the same either way."""
    prompt = "Passage: read and edit.\nImplications:\n"
    long = "\n".join(f"{i}. The tower implies fact number {i}." for i in range(400))
    pairs = [(prompt, long), (prompt, "The tower was finished in 1889.")]
    n_prompt = len(tokenizer(prompt)["input_ids"])
    n_long = n_prompt + len(tokenizer(long, add_special_tokens=False)["input_ids"]) + 1
    assert n_long > 2048
    whole, cut = prepared(tiny_model_dir, pairs, None), prepared(tiny_model_dir, pairs, 2048)
    assert len(whole[0]["input_ids"]) == len(whole[0]["labels"]) == n_long
    assert whole[0]["labels"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(whole[0]["labels"][n_prompt:]) == long + tokenizer.eos_token
    assert len(cut[0]["input_ids"]) == 2048 and cut[0]["labels"][-1] != tokenizer.eos_token_id
    assert whole[0]["input_ids"][:2048] == cut[0]["input_ids"] and whole[1] == cut[1]


def test_step_groups_cover_each_epoch_once():
    cfg = SFTConfig(epochs=2, batch_size=2, grad_accum=2, seed=3)
    steps = step_groups(5, cfg)
    assert [len(s) for s in steps] == [2, 1, 2, 1]  # groups never straddle the epoch boundary
    for epoch in (steps[:2], steps[2:]):
        assert sorted(i for group in epoch for micro in group for i in micro) == list(range(5))
    paper = step_groups(50, SFTConfig())  # 50 pairs, micro 5 × accum 2, 2 epochs → 10 steps of 10
    assert len(paper) == 10 and all(sum(len(m) for m in g) == 10 for g in paper)


def test_training_lowers_completion_loss(trained):
    _, stats = trained
    assert stats["resumed"] is False
    assert (stats["examples"], stats["dropped"], stats["steps"]) == (4, 0, 20)
    assert len(stats["losses"]) == 20 and all(math.isfinite(x) for x in stats["losses"])
    assert stats["final_loss"] == stats["losses"][-1]
    # A random 64-wide model with frozen norms and tied embeddings has logits of scale ~1, so LoRA
    # cannot take it far below ln(vocab) ≈ 10.8: a fall of several tenths is the signal here.
    first_epoch, last_epoch = stats["losses"][:2], stats["losses"][-2:]
    assert sum(last_epoch) / 2 < sum(first_epoch) / 2 - 0.4


def test_merged_checkpoint_loads_and_changes_only_targets(trained, tiny_model_dir, tokenizer, pairs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained
    rows = prepared(tiny_model_dir, pairs, FAST.max_length)
    input_ids, attention, _ = pad_batch([r["input_ids"] for r in rows], tokenizer.pad_token_id)
    labels, _, _ = pad_batch([r["labels"] for r in rows], IGNORE_INDEX)
    with torch.no_grad():
        loss_after = completion_loss(
            AutoModelForCausalLM.from_pretrained(out)(input_ids, attention).logits, labels
        )
        loss_before = completion_loss(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids, attention).logits, labels
        )
    assert loss_after[0] < loss_before[0] - 0.4 and loss_after[1] == loss_before[1]
    assert (out / DONE_MARKER).exists() and (out / "config.json").exists()
    assert list(out.glob("*.safetensors"))
    assert not list(out.parent.glob(".policy.sft-tmp-*")) and not (out.parent / ".policy.trainer").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert not any("lora" in k for k in merged) and merged.keys() == start.keys()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert not torch.equal(merged[name], start[name])
    for name in ("model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight"):
        assert torch.equal(merged[name], start[name])
    saved, original = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tiny_model_dir)
    assert saved.chat_template == original.chat_template and saved.eos_token == original.eos_token


def test_merged_logits_match_peft_logits(tiny_model_dir, tokenizer, pairs, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = SFTConfig(rank=8, alpha=16.0, lr=1e-2, epochs=1, batch_size=2, grad_accum=2, max_length=128)
    examples = [(r["input_ids"], r["labels"]) for r in prepared(tiny_model_dir, pairs, cfg.max_length)]
    losses = []
    for _ in range(2):  # same seed, same trajectory
        peft_model = wrap_lora(load_causal_lm(str(tiny_model_dir), device="cpu"), cfg)
        losses.append(train_lora(peft_model, examples, cfg, tokenizer.pad_token_id)["losses"])
    assert losses[0] == losses[1]
    probe = torch.tensor([examples[1][0]])
    with torch.no_grad():
        before = peft_model(input_ids=probe).logits
    merge_and_save(peft_model, tokenizer, tmp_path / "merged", {"note": "test"})
    with torch.no_grad():
        after = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(input_ids=probe).logits
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-4)


def test_resume_returns_stored_stats_without_training(trained, tiny_model_dir, pairs, monkeypatch, caplog):
    out, first = trained

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished out_dir must not load or train anything")

    monkeypatch.setattr(outer, "load_causal_lm", no_loading)
    monkeypatch.setattr(outer, "load_tokenizer", no_loading)
    again = train_sft(str(tiny_model_dir), pairs, out, FAST)
    assert again["resumed"] is True
    assert again["losses"] == first["losses"] and again["seconds"] == first["seconds"]
    with caplog.at_level(logging.WARNING, logger="seal_runner.outer"):
        other = train_sft(str(tiny_model_dir), pairs[:2], out, FAST)
    assert other["resumed"] is True and "other pairs" in caplog.text


def test_invalid_inputs_and_non_finite_loss(tiny_model_dir, pairs, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no \\(prompt, completion\\) pairs"):
        train_sft(str(tiny_model_dir), [], tmp_path / "a", FAST)
    with pytest.raises(ValueError, match="all 4 pairs were dropped"):
        train_sft(str(tiny_model_dir), pairs, tmp_path / "b", SFTConfig(max_length=4))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError):
        train_sft(str(tiny_model_dir), pairs, tmp_path / "c", FAST)

    from trl import SFTTrainer

    real = SFTTrainer.compute_loss

    def nan_at_second_step(self, *args, **kwargs):
        loss = real(self, *args, **kwargs)
        nan_at_second_step.calls += 1
        return loss * math.nan if nan_at_second_step.calls == 2 else loss

    nan_at_second_step.calls = 0
    monkeypatch.setattr(SFTTrainer, "compute_loss", nan_at_second_step)
    (tmp_path / ".d.trainer").mkdir()  # as a SIGKILLed SFT leaves it
    (tmp_path / ".d.trainer" / "stale.txt").write_text("x")
    with pytest.raises(RuntimeError, match="non-finite SFT loss .* at optimizer step 2/20"):
        train_sft(str(tiny_model_dir), pairs, tmp_path / "d", FAST)
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob(".d.*"))


def test_gradient_checkpointing_same_trajectory(tiny_model_dir, pairs, tmp_path, capsys):
    """Also: the console gets a progress bar, not the trainer's log dict per step."""
    from dataclasses import replace

    cfg = SFTConfig(rank=8, alpha=16.0, lr=1e-2, epochs=1, batch_size=2, max_length=128)
    runs = [
        train_sft(str(tiny_model_dir), pairs, tmp_path / str(on), replace(cfg, gradient_checkpointing=on))
        for on in (False, True)
    ]
    assert runs[0]["losses"] == pytest.approx(runs[1]["losses"], abs=1e-5)
    out = capsys.readouterr()
    assert "policy SFT" in out.err and "'loss'" not in out.out + out.err


def test_cpt_loop_gradient_checkpointing_same_trajectory(tiny_model_dir, tokenizer, pairs):
    """stage=cpt's hand-written loop (train_lora) under gradient checkpointing."""
    examples = [(r["input_ids"], r["labels"]) for r in prepared(tiny_model_dir, pairs, 128)]
    runs = []
    for checkpointing in (False, True):
        cfg = SFTConfig(
            rank=8, alpha=16.0, lr=1e-2, epochs=1, batch_size=2, gradient_checkpointing=checkpointing
        )
        peft_model = wrap_lora(load_causal_lm(str(tiny_model_dir), device="cpu"), cfg)
        assert peft_model.get_base_model().is_gradient_checkpointing is checkpointing
        runs.append(train_lora(peft_model, examples, cfg, tokenizer.pad_token_id)["losses"])
    assert runs[0] == pytest.approx(runs[1], abs=1e-5)


def test_two_processes_under_accelerate_launch_match_one(tiny_model_dir, pairs, tmp_path):
    """sft.num_processes=2 runs TRL's trainer under `accelerate launch` (gloo on CPU): each process
    takes half of every step's micro-batches and the averaged gradients give the single process's
    update."""
    from dataclasses import replace

    cfg = replace(FAST, epochs=2, batch_size=1, grad_accum=2)  # 2 micro-batches per step: one each
    one = train_sft(str(tiny_model_dir), pairs, tmp_path / "one", replace(cfg, num_processes=1))
    two = train_sft(str(tiny_model_dir), pairs, tmp_path / "two", replace(cfg, num_processes=2))
    assert (one["processes"], two["processes"]) == (1, 2) and one["steps"] == two["steps"]
    assert two["label_tokens"] == one["label_tokens"]
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not list(tmp_path.glob(".two.sft-job-*"))  # the job file is removed
    assert train_sft(str(tiny_model_dir), pairs, tmp_path / "two", replace(cfg, num_processes=2))["resumed"]


def test_processes_share_each_step():
    assert per_process_batches(5, 2, 1) == (5, 2) and per_process_batches(5, 2, 2) == (5, 1)
    assert per_process_batches(4, 1, 2) == (2, 1)  # sft=arc_bc's accumulation of 1: split the micro-batch
    with pytest.raises(InputError, match="sft.batch_size=5 x sft.grad_accum=1 cannot be shared by 2"):
        per_process_batches(5, 1, 2)


def test_sft_dtype_replaces_the_model_dtype(tiny_model_dir, pairs, tmp_path):
    """sft.dtype: the policy is loaded, trained, merged and saved in it whatever the model's dtype
    (the reference's ARC BC trains in fp32); unset, the caller's (model.dtype) is used."""
    from dataclasses import replace

    cfg = SFTConfig(rank=4, alpha=8.0, lr=1e-3, epochs=1, batch_size=4, grad_accum=1, max_length=128)
    for sft_dtype, expected in ((None, torch.bfloat16), ("float32", torch.float32)):
        out = tmp_path / f"policy-{sft_dtype}"
        train_sft(str(tiny_model_dir), pairs, out, replace(cfg, dtype=sft_dtype), dtype="bfloat16")
        weights = load_file(str(out / "model.safetensors"))
        assert {w.dtype for w in weights.values()} == {expected}
