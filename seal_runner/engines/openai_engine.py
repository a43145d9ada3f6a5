"""`engine=openai`: self-edit sampling and QA through an OpenAI-compatible server.

This is the paper's two-process topology as an option: the policy is served by a separate
`vllm serve` (e.g. on its own GPU) and each inner-loop adapter is loaded at runtime through vLLM's
LoRA endpoints, used by name, and unloaded after the batch. `api="chat"` sends every prompt as one
user message instead, for models only reachable through chat completions (GPT-4.1 in Table 2);
the server then applies the chat template, so callers must pass un-templated prompts
(`applies_chat_template`).

Requests reuse `ChatClient`: bounded concurrency and retries with backoff. An item that still
fails raises: a missing self-edit or answer would silently change the experiment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from seal_runner.choices import OpenAIApi
from seal_runner.engines.base import Completion, LoraAdapter, Sampling
from seal_runner.engines.vllm_engine import supported_lora_rank
from seal_runner.openai_api import ChatClient, ChatResult, Request

ADAPTER_EXISTS = "has already been loaded"  # vLLM's 400 for a name loaded earlier (e.g. by a crashed run)


class LoraServingError(RuntimeError):
    """The server cannot load or unload a runtime LoRA adapter (typically: started without LoRA support)."""


class OpenAIEngine:
    """Engine over `{base_url}/completions` or `{base_url}/chat/completions`.

    `max_model_len`, `dtype` and the global `seed` belong to the server, which was started with
    its own; they are accepted because every engine is built with them. Per-prompt `seeds` are
    forwarded with each request (vLLM honours them; OpenAI's chat API treats them as best effort).
    """

    def __init__(
        self,
        model_path: str,
        max_model_len: int = 2048,
        dtype: str = "auto",
        seed: int = 0,
        base_url: str | None = "http://127.0.0.1:8000/v1",
        api_key_env: str = "VLLM_API_KEY",
        model: str | None = None,
        api: OpenAIApi = OpenAIApi.completions,
        max_loras: int = 8,
        max_lora_rank: int = 32,
        max_concurrency: int = 32,
        max_retries: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 600.0,
    ) -> None:
        if max_loras < 1:
            raise ValueError(f"engine.max_loras must be >= 1, got {max_loras}")
        self.client = ChatClient(
            model or model_path,
            base_url=base_url,
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            timeout=timeout,
            api=api,
        )
        self.applies_chat_template = api == OpenAIApi.chat
        self.max_loras = max_loras
        self.server_hint = (
            f"start the server with runtime LoRA support: `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve "
            f"{self.client.model} --enable-lora --max-loras {max_loras} "
            f"--max-lora-rank {supported_lora_rank(max_lora_rank)}`"
        )

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.client!r}, api={self.client.api!r})"

    def generate(
        self,
        prompts: Sequence[str],
        sampling: Sampling,
        adapters: Sequence[LoraAdapter | None] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """Adapters are served `max_loras` at a time: the base-model prompts go with the first group;
        each group is loaded, generated and unloaded before the next."""
        adapters = list(adapters) if adapters is not None else [None] * len(prompts)
        distinct = list(dict.fromkeys(a for a in adapters if a is not None))
        params = sampling.given()  # an unset parameter is not sent: the server's default
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, max(1, len(distinct)), self.max_loras):
            group = set(distinct[start : start + self.max_loras])
            todo = [i for i, a in enumerate(adapters) if a in group or (a is None and start == 0)]
            requests = [
                self._request(prompts[i], adapters[i], None if seeds is None else seeds[i]) for i in todo
            ]
            with self._loaded(distinct[start : start + self.max_loras]):
                replies = self.client.request_many(requests, **params) if requests else []
            for i, reply in zip(todo, replies, strict=True):
                results[i] = _completion(reply)
        return results  # type: ignore[return-value]

    def _request(self, prompt: str, adapter: LoraAdapter | None, seed: int | None) -> Request:
        content: Any = [{"role": "user", "content": prompt}] if self.applies_chat_template else prompt
        return Request(content, model=adapter.name if adapter else None, seed=seed)

    @contextmanager
    def _loaded(self, adapters: list[LoraAdapter]) -> Iterator[None]:
        """Adapters loaded for the block; every one that loaded is unloaded, even when generation fails."""
        with ExitStack() as loaded:
            for adapter in adapters:
                self.load_adapter(adapter)
                loaded.callback(self.unload_adapter, adapter)
            yield

    def load_adapter(self, adapter: LoraAdapter) -> None:
        """The server reads the adapter from disk, so the path is sent absolute (shared filesystem).
        A name left loaded by an earlier, interrupted run is unloaded and loaded again from disk."""
        payload = {"lora_name": adapter.name, "lora_path": str(Path(adapter.path).resolve())}
        response = self.client.post("load_lora_adapter", payload)
        if response.status_code == 400 and ADAPTER_EXISTS in response.text:
            self.unload_adapter(adapter)
            response = self.client.post("load_lora_adapter", payload)
        if response.is_error:
            raise LoraServingError(self._lora_error("load", adapter, response.status_code, response.text))

    def unload_adapter(self, adapter: LoraAdapter) -> None:
        response = self.client.post("unload_lora_adapter", {"lora_name": adapter.name})
        if response.is_error:
            raise LoraServingError(self._lora_error("unload", adapter, response.status_code, response.text))

    def _lora_error(self, action: str, adapter: LoraAdapter, status: int, body: str) -> str:
        # vLLM answers its own refusals (e.g. "No adapter found") with an {"error": ...} object; a
        # bare 404 ({"detail": "Not Found"}) means the route itself is missing.
        missing_route = status == 404 and '"error"' not in body
        cause = (
            "the server has no runtime LoRA endpoints" if missing_route else "the server refused the request"
        )
        return (
            f"could not {action} LoRA adapter {adapter.name!r} ({adapter.path}) at "
            f"{self.client.base_url}/{action}_lora_adapter: HTTP {status} {body[:300]!r}; {cause}. "
            f"To serve adapters, {self.server_hint}; the adapter directory must be readable by the server."
        )

    def usage(self) -> dict[str, float]:
        """Requests, retries, tokens and estimated cost so far (see `ClientStats`)."""
        return self.client.stats.usage()

    def close(self) -> None:
        """Nothing to release: the server belongs to the user, and each batch closes its connections."""


def _completion(reply: ChatResult) -> Completion:
    text = reply.text or ""  # request_many raises on failure, so a reply always has text
    return Completion(text, reply.completion_tokens, "length" if reply.finish_reason == "length" else "stop")
