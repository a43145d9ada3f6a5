"""Model resolution and engine-side validation that needs no model weights."""

from __future__ import annotations

import pytest

from seal_runner.engines.vllm_engine import VLLM_LORA_RANKS, progress_bar, supported_lora_rank
from seal_runner.models import ModelPathError, resolve_model_path


def test_missing_local_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelPathError, match="does not exist"):
        resolve_model_path(str(tmp_path / "no-such-model"))


def test_existing_path_and_hub_id_pass_through(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model_path("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"


@pytest.mark.parametrize(("rank", "expected"), [(1, 8), (8, 8), (9, 16), (32, 32), (100, 128), (320, 320)])
def test_lora_rank_rounds_up_to_what_vllm_accepts(rank, expected):
    assert supported_lora_rank(rank) == expected


def test_lora_rank_beyond_vllm_names_the_allowed_values():
    with pytest.raises(ValueError, match=str(VLLM_LORA_RANKS[-1])):
        supported_lora_rank(1024)


def test_vllm_bars_show_one_named_progress_bar_per_call() -> None:
    """vLLM asks for two bars per generate call; the instant rendering one is hidden, the other named."""
    rendering = progress_bar([1, 2], desc="Rendering prompts")
    processed = progress_bar(total=2, desc="Processed prompts", postfix="est. speed input: 0.00 toks/s")
    assert rendering.disable and list(rendering) == [1, 2]
    assert not processed.disable and processed.desc == "generate (vllm)" and processed.total == 2
    processed.close()
