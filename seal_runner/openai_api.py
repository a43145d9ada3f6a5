"""OpenAI-API client for the LLM judge and the `openai` engine: bounded concurrency, our own retry
policy, a disk cache.

The reference grader called the API one question at a time and counted any API error as a wrong
answer (method doc section 5). This wrapper fixes both: requests run concurrently under a semaphore,
transient failures (429, 5xx, timeouts, dropped connections, malformed replies) are retried with
exponential backoff and jitter, and an item that exhausts the budget either raises `APIFailure` or
comes back with `text=None` so the caller can count it as ungraded. The openai client's own retries
are disabled so every attempt is ours and shows up in `ClientStats`. The same machinery serves chat
completions (the judge, GPT-4.1) and raw-prompt completions (a `vllm serve` policy), where each
request may name its own model (a runtime-loaded LoRA adapter) and sampling seed.

The API key is read only from the environment, kept in memory, and never logged, cached or put in
an error message; cache keys hash only (model, messages, sampling parameters).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import openai

from seal_runner.choices import OnFailure, OpenAIApi

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
LOCAL_DUMMY_KEY = "local-no-key"
RETRYABLE_STATUS = frozenset({408, 429})

# USD per 1M (input, output) tokens. A dated snapshot ("gpt-4.1-2025-04-14") is priced as its alias.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
}
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")

Messages = list[dict[str, str]]
ENDPOINT_PATHS = {OpenAIApi.chat: "chat/completions", OpenAIApi.completions: "completions"}


def price_per_mtok(model: str) -> tuple[float, float]:
    """Known models by exact name (or dated snapshot); anything else costs 0 so estimates never guess."""
    return PRICES_PER_MTOK.get(_DATE_SUFFIX.sub("", model), (0.0, 0.0))


class MissingAPIKeyError(RuntimeError):
    """Raised at construction so a run fails before doing GPU work, not at the first grading call."""


class APIFailure(RuntimeError):
    """A request that still failed after the whole retry budget (or with a non-retryable error)."""

    def __init__(self, endpoint: str, model: str, last_error: str, attempts: int) -> None:
        self.endpoint, self.model, self.last_error, self.attempts = endpoint, model, last_error, attempts
        super().__init__(
            f"request failed after {attempts} attempt(s): endpoint={endpoint} model={model}; "
            f"last error: {last_error}"
        )


class MalformedReply(Exception):
    """A 2xx reply we cannot use (not JSON, no choices, no content): retried like a server error."""


@dataclass(frozen=True)
class Request:
    """One item of a batch: chat messages (api="chat") or a raw prompt (api="completions"), plus
    the per-item fields a batch may vary: the served model (e.g. a LoRA adapter) and the seed."""

    content: Messages | str
    model: str | None = None  # None = the client's model
    seed: int | None = None


@dataclass
class ChatResult:
    """`text` is None only when the item failed and the caller asked for `on_failure="skip"`.
    A cached result has no token counts or finish reason: nothing was generated for it."""

    text: str | None
    error: str | None = None
    attempts: int = 0
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


@dataclass
class ClientStats:
    """Per-client counters; `requests` counts HTTP attempts, so it equals what the server saw."""

    model: str
    requests: int = 0
    retries: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retry_wait_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Locked so batches run from worker threads (see `complete_many`) cannot lose counts."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    @property
    def cost_usd(self) -> float:
        price_in, price_out = price_per_mtok(self.model)
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return {**data, "cost_usd": self.cost_usd}

    def usage(self) -> dict[str, float]:
        """The numeric counters only (no model name): summable across clients and loggable as metrics."""
        return {k: v for k, v in self.as_dict().items() if k != "model"}


def cache_key(model: str, messages: Messages | str, sampling: dict[str, Any]) -> str:
    """sha256 over the request's content only; the key and endpoint are deliberately not part of it."""
    payload = json.dumps({"model": model, "messages": messages, "sampling": sampling}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class DiskCache:
    """One small JSON file per key, written atomically so a killed run never leaves a torn entry."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text())["text"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, model: str, text: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump({"model": model, "text": text}, tmp)
        os.replace(tmp.name, path)


def parse_reply(body: str, api: OpenAIApi = OpenAIApi.chat) -> tuple[str, int, int, str | None]:
    """(text, prompt_tokens, completion_tokens, finish_reason) from a chat-completions or completions
    JSON body, or MalformedReply."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        content = choice["message"]["content"] if api == OpenAIApi.chat else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise MalformedReply(f"unusable reply ({type(exc).__name__}): {body[:200]!r}") from exc
    if not isinstance(content, str):
        raise MalformedReply(f"reply has no text content: {body[:200]!r}")
    usage = data.get("usage") or {}
    return (
        content,
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        choice.get("finish_reason"),
    )


def retry_after_s(exc: Exception) -> float | None:
    """The server's requested wait (retry-after-ms or retry-after in seconds), when it sent one."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return float(response.headers[header]) * scale
        except (KeyError, ValueError):
            continue
    return None


def is_retryable(exc: Exception) -> bool:
    if isinstance(exc, (MalformedReply, openai.APIConnectionError)):  # includes APITimeoutError
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    )


def _is_local(base_url: str) -> bool:
    return urlparse(base_url).hostname in LOCAL_HOSTS


class ChatClient:
    """Concurrent, retried, cached completions against one OpenAI-compatible endpoint: chat
    (`api="chat"`, the judge) or raw prompts (`api="completions"`, a vLLM server's policy)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        max_retries: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 60.0,
        cache_dir: str | os.PathLike[str] | None = None,
        api: OpenAIApi = OpenAIApi.chat,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0:
            raise ValueError("max_concurrency must be >= 1 and max_retries >= 0")
        if api not in ENDPOINT_PATHS:  # a config's api was checked at composition, not a caller's
            raise ValueError(f"api must be one of {OpenAIApi.values()}, got {api!r}")
        self.model, self.api = model, OpenAIApi(api)
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.endpoint = f"{self.base_url}/{ENDPOINT_PATHS[api]}"
        self.max_concurrency, self.max_retries = max_concurrency, max_retries
        self.backoff_initial, self.backoff_max, self.timeout = backoff_initial, backoff_max, timeout
        self.cache = DiskCache(cache_dir) if cache_dir is not None else None
        self.stats = ClientStats(model=model)
        self._api_key = os.environ.get(api_key_env) or ""
        if not self._api_key:
            if not _is_local(self.base_url):
                raise MissingAPIKeyError(
                    f"environment variable {api_key_env} is not set; {self.endpoint} needs an API key"
                )
            self._api_key = LOCAL_DUMMY_KEY

    def __repr__(self) -> str:  # explicit so the key can never leak through a repr
        return f"ChatClient(model={self.model!r}, endpoint={self.endpoint!r})"

    def complete_many(
        self, conversations: list[Messages], *, on_failure: OnFailure = OnFailure["raise"], **sampling: Any
    ) -> list[ChatResult]:
        """Chat conversations to the client's model; see `request_many`."""
        return self.request_many([Request(c) for c in conversations], on_failure=on_failure, **sampling)

    def request_many(
        self, requests: list[Request], *, on_failure: OnFailure = OnFailure["raise"], **sampling: Any
    ) -> list[ChatResult]:
        """Synchronous entry point; from inside a running event loop the batch runs on a worker thread."""
        batch = self.arequest_many(requests, on_failure=on_failure, **sampling)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(batch)
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, batch).result()

    async def arequest_many(
        self, requests: list[Request], *, on_failure: OnFailure = OnFailure["raise"], **sampling: Any
    ) -> list[ChatResult]:
        """Results in input order. The openai client is per batch because it is bound to one event loop."""
        if on_failure not in OnFailure.values():
            raise ValueError(f"on_failure must be one of {OnFailure.values()}, got {on_failure!r}")
        api = openai.AsyncOpenAI(
            api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout
        )
        slots = asyncio.Semaphore(self.max_concurrency)
        tasks = [
            asyncio.ensure_future(self._complete_one(api, slots, request, sampling, on_failure))
            for request in requests
        ]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.close()

    def post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """A plain authenticated POST to `{base_url}/{path}` (server management such as vLLM's LoRA
        endpoints); the caller judges the status. Connection errors propagate."""
        return httpx.post(
            f"{self.base_url}/{path}",
            json=payload,
            headers={"Authorization": f"Bearer {self._api_key}"},
            timeout=self.timeout,
        )

    async def _complete_one(
        self,
        api: openai.AsyncOpenAI,
        slots: asyncio.Semaphore,
        request: Request,
        sampling: dict[str, Any],
        on_failure: OnFailure,
    ) -> ChatResult:
        model = request.model or self.model
        if request.seed is not None:
            sampling = {**sampling, "seed": request.seed}
        key = cache_key(model, request.content, sampling)
        if self.cache is not None and (text := self.cache.get(key)) is not None:
            self.stats.add(cache_hits=1)
            return ChatResult(text=text, cached=True)
        attempts, last_error = 0, ""
        while attempts <= self.max_retries:
            attempts += 1
            async with slots:  # backoff sleeps happen outside, so waiting items hold no slot
                self.stats.add(requests=1)
                try:
                    text, prompt_tokens, completion_tokens, finish_reason = await self._request(
                        api, model, request.content, sampling
                    )
                except (MalformedReply, openai.APIError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    if not is_retryable(exc):
                        break
                    wait = self._backoff(attempts, exc)
                else:
                    self.stats.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
                    if self.cache is not None:
                        self.cache.put(key, model, text)
                    return ChatResult(
                        text=text,
                        attempts=attempts,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        finish_reason=finish_reason,
                    )
            if attempts <= self.max_retries:
                log.warning(
                    "request attempt %d to %s failed (%s); retrying in %.2fs",
                    attempts,
                    model,
                    last_error,
                    wait,
                )
                self.stats.add(retries=1, retry_wait_s=wait)
                await asyncio.sleep(wait)
        self.stats.add(failures=1)
        failure = APIFailure(self.endpoint, model, last_error, attempts)
        if on_failure == OnFailure["raise"]:
            raise failure
        log.warning("%s", failure)
        return ChatResult(text=None, error=str(failure), attempts=attempts)

    async def _request(
        self, api: openai.AsyncOpenAI, model: str, content: Messages | str, sampling: dict[str, Any]
    ) -> tuple[str, int, int, str | None]:
        """Parse the body ourselves: the SDK's lenient parsing would let garbage or missing choices through."""
        if self.api == OpenAIApi.chat:
            raw = await api.chat.completions.with_raw_response.create(
                model=model, messages=content, **sampling
            )
        else:
            raw = await api.completions.with_raw_response.create(model=model, prompt=content, **sampling)
        return parse_reply(raw.http_response.text, self.api)

    def _backoff(self, attempt: int, exc: Exception) -> float:
        """Exponential with jitter in [d/2, d] (so a floor is testable), at least the server's retry-after."""
        nominal = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        jittered = nominal * random.uniform(0.5, 1.0)
        return min(self.backoff_max, max(jittered, retry_after_s(exc) or 0.0))
