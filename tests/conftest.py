"""Shared fixtures and helpers: a tiny random Llama (unit tests), the real SmolLM2 checkpoint
(integration), composed configs, and `seal-run` as a subprocess (integration)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEAL_SHARED_DIR", REPO.parent / "shared"))
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

# The installed entry point next to this interpreter: what a user types, not this process's imports.
SEAL_RUN = str(Path(sys.executable).with_name("seal-run"))
# A pipeline run's environment: Hydra's full traceback if it fails, one OpenMP thread per process
# (the CI machine has 2 cores and a run may start workers), no W&B chatter.
RUN_ENV = {"HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}


def seal_run(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] = RUN_ENV,
    unset: Iterable[str] = (),
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """`seal-run *args` as a subprocess, its output captured. The child's environment is this
    process's with `unset` removed and `env` set. With `check`, it must exit 0; the assertion shows
    the tail of its stdout and stderr. Tests that call this are `pytest.mark.integration`."""
    removed = set(unset)
    child_env = {k: v for k, v in os.environ.items() if k not in removed} | dict(env)
    proc = subprocess.run(
        [SEAL_RUN, *args], cwd=cwd, env=child_env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def seal_run_error(
    *args: str,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
    timeout: float = 120,
    **kwargs,
) -> str:
    """The console output of a `seal-run` that must stop with a message: a non-zero exit and no
    traceback. HYDRA_FULL_ERROR is unset, as in a user's shell, since it makes Hydra print one."""
    proc = seal_run(
        *args, env=env or {}, unset=("HYDRA_FULL_ERROR", *unset), timeout=timeout, check=False, **kwargs
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    return out


@pytest.fixture(scope="module")
def hydra_ctx() -> Iterator[None]:
    """seal_runner's config module for Hydra's compose API, for the tests of one module."""
    from hydra import initialize_config_module

    from seal_runner.config import register_configs

    register_configs()
    with initialize_config_module(config_module="seal_runner.conf", version_base="1.3"):
        yield


def compose_config(overrides: list[str], return_hydra_config: bool = False):
    """The composed `seal-run` config for `overrides` (inside `hydra_ctx`); with `hydra` too when
    `return_hydra_config` (what `seal-run --cfg hydra` prints)."""
    from hydra import compose

    return compose(config_name="config", overrides=overrides, return_hydra_config=return_hydra_config)


def error_text(exc: BaseException) -> str:
    """An error's message and its causes': Hydra names the key in one, OmegaConf the detail in another."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_worker() -> None:
    """`make test` runs two xdist workers on 2 cores: each worker's own torch work takes one core."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny matmuls on 2 cores shared with another job run ~30x slower with 2 OpenMP threads; a
    module opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
