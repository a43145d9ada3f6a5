"""The engine interface: formatted prompts (+ optional per-prompt LoRA adapter) → completions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class LoraAdapter:
    """A PEFT-format adapter directory. `name` must be unique for the engine's lifetime: vLLM caches
    adapters by id, so reusing a name for new weights would serve stale weights."""

    name: str
    path: str


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 64


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
