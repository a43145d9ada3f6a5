"""Shared fixtures: a tiny random Llama (unit tests) and the real SmolLM2 checkpoint (integration)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEAL_SHARED_DIR", REPO.parent / "shared"))
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


@pytest.fixture(scope="module")
def hydra_ctx() -> Iterator[None]:
    """seal_runner's config module for Hydra's compose API, for the tests of one module."""
    from hydra import initialize_config_module

    from seal_runner.config import register_configs

    register_configs()
    with initialize_config_module(config_module="seal_runner.conf", version_base="1.3"):
        yield


def compose_config(overrides: list[str]):
    """The composed `seal-run` config for `overrides` (inside `hydra_ctx`)."""
    from hydra import compose

    return compose(config_name="config", overrides=overrides)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with the SmolLM2 tokenizer, saved as an HF checkpoint."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tie_word_embeddings=True)


def save_tiny_llama(path: Path, tie_word_embeddings: bool) -> Path:
    """The tests' 2-layer random Llama (seed 0) with the SmolLM2 tokenizer, saved to `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = smollm2_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def smollm2_tokenizer():
    from seal_runner.models import load_tokenizer

    return load_tokenizer(str(smollm2_dir()))


def smollm2_dir() -> Path:
    from seal_runner.models import cache_root, ensure_smollm2_checkpoint

    return ensure_smollm2_checkpoint(cache_root())


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return smollm2_dir()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED} (set SEAL_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def vllm_engine(smollm2_path):
    """One in-process vLLM engine for the whole session: start-up costs ~30 s on CPU."""
    from seal_runner.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(str(smollm2_path), max_model_len=1024, max_loras=4, max_lora_rank=16)
    yield engine
    engine.close()
