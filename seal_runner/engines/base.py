"""The engine interface: formatted prompts (+ optional per-prompt LoRA adapter) → completions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class LoraAdapter:
    """A PEFT-format adapter directory. `name` must be unique for the engine's lifetime: vLLM caches
    adapters by id, so reusing a name for new weights would serve stale weights."""

    name: str
    path: str


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters. None = not set: an API request leaves the field out (the API's default,
    as the reference's GPT-4.1 calls do); vLLM and the HF engine use temperature 1, top_p 1 and no
    token limit but the model's context."""

    temperature: float | None = 0.0
    top_p: float | None = 1.0
    max_tokens: int | None = 64

    def given(self) -> dict[str, float | int]:
        """The parameters that are set, by name."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Completion:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (EOS) or "length"


class Engine(Protocol):
    def generate(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        adapters: Sequence[LoraAdapter | None] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One call serves prompts with different adapters (None = base model). `seeds` fixes each
        prompt's sampling so reruns reproduce the same self-edits."""
        ...

    def close(self) -> None: ...


class LazyEngine:
    """An engine built on its first use: a resumed stage whose records are all on disk starts none
    (a vLLM-CPU engine takes about 80 s to start, a 7B one on a GPU minutes). Every attribute but
    `close` is the built engine's."""

    def __init__(self, build: Callable[[], Engine]) -> None:
        self._build: Callable[[], Engine] | None = build
        self._engine: Engine | None = None

    def __getattr__(self, name: str) -> Any:  # only for names this proxy lacks
        if self._engine is None:
            if self._build is None:
                raise RuntimeError("engine used after close()")
            self._engine = self._build()
        return getattr(self._engine, name)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._build = self._engine = None
