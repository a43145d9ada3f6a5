"""scripts/smoke_paper_presets.py: every paper preset composes with the smoke run's overrides (sizes
and wiring only, never a protocol key), and its tiny models are the presets' architectures. The runs
themselves (every preset end to end through `seal-run`: 6 of 6 ok in 31.5 min on 2 cores,
outputs/results/smoke_presets/smoke.md) are `make smoke-presets`, not part of `make test`."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "smoke_paper_presets", REPO / "scripts" / "smoke_paper_presets.py"
)
smoke = importlib.util.module_from_spec(spec)
sys.modules["smoke_paper_presets"] = smoke
spec.loader.exec_module(smoke)


def test_dry_run_composes_every_paper_preset(tmp_path, capsys):
    """`--dry-run` composes each job with `seal-run --cfg job` (the prompts sweep: all 5 points) and
    writes nothing."""
    presets = {p.stem for p in (REPO / "conf" / "experiment" / "paper").glob("*.yaml")}
    assert set(smoke.PRESETS) == presets  # a new paper preset needs its sizes here
    assert smoke.main(["--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for preset in presets:
        jobs = 5 if preset == "knowledge_prompts" else 1
        assert f"== {preset}: {jobs} job(s) compose" in out
    assert "lora.epochs: 10 -> 1" in out and "domain.n_articles: 200 -> 2" in out
    assert not any(tmp_path.iterdir())


def test_dry_run_refuses_an_override_of_the_protocol():
    job = smoke.build_job("knowledge_cpt", Path("/tmp/smoke"), "http://127.0.0.1:1/v1")
    with pytest.raises(SystemExit, match=r"protocol keys \['cpt.mode'\]"):
        smoke.dry_run(dataclasses.replace(job, sizes=(*job.sizes, "cpt.mode=fast")))


def test_tiny_checkpoints_have_the_presets_architectures(tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from seal_runner.domains.arc.ttt_format import ChatRenderer
    from seal_runner.models import load_tokenizer

    smoke.make_models(tmp_path)
    qwen = AutoConfig.from_pretrained(tmp_path / "tiny-qwen2")
    llama = AutoConfig.from_pretrained(tmp_path / "tiny-llama3")
    assert qwen.architectures == ["Qwen2ForCausalLM"] and not qwen.tie_word_embeddings
    assert llama.architectures == ["LlamaForCausalLM"] and llama.tie_word_embeddings
    assert llama.rope_parameters["rope_type"] == "llama3"
    for config in (qwen, llama):  # vLLM-CPU attention takes head sizes of 32 and up
        assert config.hidden_size // config.num_attention_heads >= 32
    tokenizer = load_tokenizer(str(tmp_path / "tiny-llama3"))
    ChatRenderer(tokenizer).check_llama3_markup()
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id == llama.vocab_size - 4
    assert tokenizer.eos_token == tokenizer.pad_token == "<|eot_id|>"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting")
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    # Sampled text has lines and ends (favour_lines): newline ~14% and EOS ~1% of next tokens.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny-qwen2")
    with torch.no_grad():
        probs = model(
            torch.randint(0, 49000, (2, 64), generator=torch.Generator().manual_seed(0))
        ).logits.softmax(-1)
    assert 0.05 < probs[..., 198].mean() < 0.3 and 0.003 < probs[..., model.config.eos_token_id].mean() < 0.05
