"""vLLM's offline `LLM` with multi-LoRA: one engine per policy, every adapter of a batch in one call."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from seal_runner.engines.base import Completion, LoraAdapter, Sampling
from seal_runner.logs import stderr_to_library_log

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def supported_lora_rank(rank: int) -> int:
    """vLLM accepts only these max_lora_rank values; round up, or fail naming them."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}; vLLM allows {VLLM_LORA_RANKS}")
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank; allowed: {VLLM_LORA_RANKS}")


def check_adapter_rank(adapter: LoraAdapter, max_lora_rank: int) -> None:
    """Fail naming the adapter before vLLM does so from deep inside its LoRA manager."""
    config = Path(adapter.path) / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"adapter {adapter.name!r}: no adapter_config.json in {adapter.path}")
    rank = json.loads(config.read_text())["r"]
    if rank > max_lora_rank:
        raise ValueError(
            f"adapter {adapter.name!r} has LoRA rank {rank} but the engine serves at most {max_lora_rank}: "
            f"set engine.max_lora_rank (and qa_engine.max_lora_rank) >= {rank}"
        )


@contextmanager
def building_engine(in_process: bool) -> Iterator[None]:
    """`engine.in_process`: vLLM's engine core and worker in this process. On 2 CPU cores it starts in
    ~7 s instead of 26-65 s and samples 1.63x faster (vLLM-CPU's own layout leaves one core to an
    engine-core process that spins while generating), but while it is alive the transformers inner
    loop in this process runs ~1.5x slower, so it is off by default and the CPU demo pairs it with
    `engine.keep_alive=false` (RESULTS.md, "Sampling and QA engines"). What building an engine
    changes in this process is kept to the build:
    - VLLM_ENABLE_V1_MULTIPROCESSING, which vLLM reads then; processes the run starts later (a
      `vllm serve`, inner workers) keep their own default;
    - in this process, vLLM's CPU worker seeds the global RNGs (random, numpy, torch) with the
      engine's seed and replaces `torch.set_num_threads` with a no-op. Both are restored, so that
      building an engine (which a resumed run may skip) changes nothing else the run computes."""
    import random

    import numpy as np
    import torch

    name = "VLLM_ENABLE_V1_MULTIPROCESSING"
    previous = os.environ.get(name)
    set_num_threads = torch.set_num_threads
    rng_states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    os.environ[name] = "0" if in_process else "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous
        torch.set_num_threads = set_num_threads
        random.setstate(rng_states[0])
        np.random.set_state(rng_states[1])
        torch.set_rng_state(rng_states[2])


def progress_bar(*args, desc: str = "", **kwargs):
    """vLLM's bars as the run shows them: its instant "Rendering prompts" bar hidden, its "Processed
    prompts" bar named like the HF engine's ("generate (vllm)"), its token-speed postfix kept."""
    from tqdm.auto import tqdm

    return tqdm(*args, desc="generate (vllm)", unit="prompt", disable=desc == "Rendering prompts", **kwargs)


class VLLMEngine:
    """`keep_alive=False` stops the engine after every `generate` call and starts it again on the next:
    an in-process engine costs ~7 s to start on 2 CPU cores, while one left alive slows the
    transformers inner loop that runs between sampling calls ~1.5x (its own layout's 26-65 s start
    makes this a loss there, and on a GPU a 7B engine takes minutes)."""

    def __init__(
        self,
        model_path: str,
        max_model_len: int = 2048,
        dtype: str = "auto",
        seed: int = 0,
        max_loras: int = 8,
        max_lora_rank: int = 32,
        gpu_memory_utilization: float = 0.4,
        kv_cache_space_gb: int = 2,
        max_num_seqs: int = 64,
        enforce_eager: bool = True,
        in_process: bool = False,
        keep_alive: bool = True,
    ) -> None:
        import torch

        on_cpu = not torch.cuda.is_available()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_space_gb))
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines drown the run's own log
        # vLLM-CPU chunks a prefill that overflows the step's token budget and then rewinds the
        # generator of each partly-prefilled seeded request, which only CUDA generators support
        # ("CPU Generator does not use offset" -> EngineDeadError). On CPU every prompt is therefore
        # prefilled whole, with a budget that admits max_num_seqs full-length prompts per step.
        cpu_scheduling = {
            "enable_chunked_prefill": False,
            "max_num_batched_tokens": max_model_len * max_num_seqs,
        }
        self.max_lora_rank = supported_lora_rank(max_lora_rank)
        self.in_process, self.keep_alive = in_process, keep_alive
        self._settings = {
            "model": model_path,
            "max_model_len": max_model_len,
            "dtype": ("float32" if on_cpu else "bfloat16") if dtype == "auto" else dtype,
            "seed": seed,
            "enable_lora": True,
            "max_loras": max_loras,
            "max_lora_rank": self.max_lora_rank,
            "max_num_seqs": max_num_seqs,
            "enforce_eager": enforce_eager,
            **(cpu_scheduling if on_cpu else {"gpu_memory_utilization": gpu_memory_utilization}),
        }
        self.llm = None
        self._lora_ids: dict[str, int] = {}  # kept across restarts: a name is never served twice
        self._start()

    def _start(self) -> None:
        import vllm.envs
        from vllm import LLM

        with building_engine(self.in_process), stderr_to_library_log():
            vllm.envs.disable_envs_cache()  # an earlier in-process engine froze vLLM's settings as they were
            self.llm = LLM(**self._settings)

    def _stop(self) -> None:
        from seal_runner.models import release_memory

        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        release_memory()

    def _request(self, adapter: LoraAdapter | None):
        from vllm.lora.request import LoRARequest

        if adapter is None:
            return None
        if adapter.name not in self._lora_ids:
            check_adapter_rank(adapter, self.max_lora_rank)
        lora_id = self._lora_ids.setdefault(adapter.name, len(self._lora_ids) + 1)
        return LoRARequest(adapter.name, lora_id, adapter.path)

    def generate(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        adapters: Sequence[LoraAdapter | None] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        from vllm import SamplingParams

        if not prompts:
            return []
        # Unset parameters keep vLLM's defaults, but for max_tokens (16): unset = up to the context.
        settings = {**sampling.given(), "max_tokens": sampling.max_tokens}
        params = [
            SamplingParams(**settings, seed=None if seeds is None else seeds[i]) for i in range(len(prompts))
        ]
        requests = None if adapters is None else [self._request(a) for a in adapters]
        if self.llm is None:
            self._start()
        outputs = self.llm.generate(list(prompts), params, lora_request=requests, use_tqdm=progress_bar)
        completions = []
        for out in outputs:
            first = out.outputs[0]
            reason = "length" if first.finish_reason == "length" else "stop"
            completions.append(Completion(first.text, len(first.token_ids), reason))
        if self.keep_alive:
            self._forget(adapters)
        else:
            self._stop()
        return completions

    def _forget(self, adapters: Sequence[LoraAdapter | None] | None) -> None:
        """Adapters are single-use in SEAL: unload them so the CPU/GPU LoRA caches stay small."""
        for adapter in adapters or []:
            if adapter is not None and adapter.name in self._lora_ids:
                self.llm.llm_engine.remove_lora(self._lora_ids[adapter.name])

    def close(self) -> None:
        """Stop the engine (and its engine-core process, if it has one) now rather than at interpreter
        exit: multirun jobs and the outer loop build several engines in one process."""
        if self.llm is not None:
            self._stop()
