"""Model resolution and engine-side validation that needs no model weights."""

from __future__ import annotations

import os

import pytest

from seal_runner.engines.vllm_engine import (
    VLLM_LORA_RANKS,
    building_engine,
    progress_bar,
    supported_lora_rank,
)
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


@pytest.mark.parametrize("exported", [None, "1"])
def test_building_an_engine_leaves_env_threads_and_rngs_as_they_were(monkeypatch, exported) -> None:
    """Children started later (a `vllm serve`, inner workers) must not inherit the run's choice, and
    what vLLM's in-process CPU worker does to the process (seeding the global RNGs, turning
    `torch.set_num_threads` into a no-op) must not outlast the build, even a failed one."""
    import random

    import numpy as np
    import torch

    name = "VLLM_ENABLE_V1_MULTIPROCESSING"
    if exported is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, exported)
    monkeypatch.setattr(torch, "set_num_threads", torch.set_num_threads)  # restored after the test
    set_num_threads = torch.set_num_threads

    def draw() -> tuple:
        return torch.rand(2).tolist(), random.random(), np.random.rand()

    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    expected = draw()
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    with pytest.raises(RuntimeError), building_engine(in_process=True):
        assert os.environ[name] == "0"
        torch.manual_seed(0), random.seed(0), np.random.seed(0)  # what vLLM's worker does
        torch.set_num_threads = lambda n: None
        raise RuntimeError("engine failed to start")
    assert os.environ.get(name) == exported and torch.set_num_threads is set_num_threads
    assert draw() == expected
    with building_engine(in_process=False):
        assert os.environ[name] == "1"
    assert os.environ.get(name) == exported
