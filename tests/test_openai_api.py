"""ChatClient against a real local HTTP server: retries, backoff, failure modes, cache, concurrency, key hygiene."""

from __future__ import annotations

import asyncio
import time

import pytest
from fake_openai_server import FakeOpenAIServer

from seal_runner.openai_api import (
    APIFailure,
    ChatClient,
    MissingAPIKeyError,
    cache_key,
    price_per_mtok,
)

KEY_ENV, PLANTED_KEY = "SEAL_TEST_JUDGE_KEY", "sk-PLANTED-123"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def planted_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)


def make_client(server: FakeOpenAIServer, **overrides) -> ChatClient:
    """Tiny backoff and timeout so failure tests cost tens of milliseconds."""
    settings = {"backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 2.0, "api_key_env": KEY_ENV}
    return ChatClient("gpt-4.1", base_url=server.base_url, **{**settings, **overrides})


@pytest.mark.parametrize("kind", ["429", "500", "garbage", "no_choices", "slow", "drop"])
def test_retries_each_failure_kind_then_succeeds(kind: str) -> None:
    with FakeOpenAIServer(script=[kind, kind], reply=lambda body: "yes", slow_seconds=0.6) as server:
        client = make_client(server, timeout=0.25)
        [result] = client.complete_many([HELLO])
    assert result.text == "yes" and result.error is None and result.attempts == 3
    assert server.hits == 3
    assert (client.stats.requests, client.stats.retries, client.stats.failures) == (3, 2, 0)


def test_backoff_actually_waits() -> None:
    with FakeOpenAIServer(script=["500"] * 3, reply=lambda body: "ok") as server:
        client = make_client(server, backoff_initial=0.05, backoff_max=1.0)
        start = time.perf_counter()
        client.complete_many([HELLO])
        elapsed = time.perf_counter() - start
    floor = (0.05 + 0.1 + 0.2) / 2  # jitter keeps each wait within [d/2, d]
    assert client.stats.retry_wait_s >= floor
    assert elapsed >= floor


def test_rate_limit_honours_retry_after() -> None:
    with FakeOpenAIServer(script=["429"], retry_after="0.3", reply=lambda body: "ok") as server:
        client = make_client(server, backoff_max=1.0)
        start = time.perf_counter()
        [result] = client.complete_many([HELLO])
    assert result.text == "ok"
    assert time.perf_counter() - start >= 0.3


def test_clear_failure_after_retry_budget() -> None:
    with FakeOpenAIServer(script=["500"] * 10) as server:
        client = make_client(server, max_retries=2)
        with pytest.raises(APIFailure) as info:
            client.complete_many([HELLO])
    message = str(info.value)
    assert "gpt-4.1" in message and f"{server.base_url}/chat/completions" in message
    assert "3 attempt" in message and "500" in message
    assert info.value.attempts == 3 and server.hits == 3
    assert client.stats.failures == 1 and PLANTED_KEY not in message


def test_non_retryable_status_fails_at_once() -> None:
    with FakeOpenAIServer(script=["401"]) as server:
        client = make_client(server)
        [result] = client.complete_many([HELLO], on_failure="skip")
    assert server.hits == 1 and result.text is None and "AuthenticationError" in (result.error or "")


def test_skip_returns_error_instead_of_raising() -> None:
    with FakeOpenAIServer(script=["500"], reply=lambda body: "fine") as server:
        client = make_client(server, max_retries=0, max_concurrency=1)  # requests run in input order
        failed, ok = client.complete_many([HELLO, [{"role": "user", "content": "again"}]], on_failure="skip")
    assert failed.text is None and "endpoint=" in (failed.error or "")
    assert ok.text == "fine"
    assert client.stats.failures == 1


def test_results_keep_input_order_under_concurrency() -> None:
    echo = lambda body: body["messages"][0]["content"].upper()  # noqa: E731
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    with FakeOpenAIServer(reply=echo, latency=0.01) as server:
        results = make_client(server, max_concurrency=8).complete_many(conversations)
    assert [r.text for r in results] == [f"Q{i}" for i in range(20)]


def test_cache_hit_issues_no_request(tmp_path) -> None:
    with FakeOpenAIServer(reply=lambda body: "cached answer") as server:
        client = make_client(server, cache_dir=tmp_path)
        first = client.complete_many([HELLO], temperature=0.0)
        assert server.hits == 1
        second = client.complete_many([HELLO], temperature=0.0)
        assert server.hits == 1, "an identical call must be served from the cache"
        client.complete_many([HELLO], temperature=0.5)
        assert server.hits == 2, "different sampling parameters are a different key"
        fresh = make_client(server, cache_dir=tmp_path).complete_many([HELLO], temperature=0.0)
    assert first[0].text == second[0].text == fresh[0].text == "cached answer"
    assert second[0].cached and not first[0].cached
    assert client.stats.cache_hits == 1 and client.stats.requests == 2


def test_cache_key_depends_on_content_only() -> None:
    base = cache_key("gpt-4.1", HELLO, {"temperature": 0})
    assert base == cache_key("gpt-4.1", [dict(HELLO[0])], {"temperature": 0})
    assert base != cache_key("gpt-4.1-mini", HELLO, {"temperature": 0})
    assert base != cache_key("gpt-4.1", HELLO, {"temperature": 0, "max_tokens": 4})


def test_api_key_is_sent_but_never_stored_or_shown(tmp_path) -> None:
    with FakeOpenAIServer(script=["500", "ok"], reply=lambda body: "yes") as server:
        client = make_client(server, cache_dir=tmp_path)
        client.complete_many([HELLO, [{"role": "user", "content": "other"}]])
    assert server.auth_headers[-1] == f"Bearer {PLANTED_KEY}", "the key comes from the named env var"
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files, "the cache should hold entries"
    for path in files:
        assert PLANTED_KEY not in path.read_text() and PLANTED_KEY not in str(path)
    assert PLANTED_KEY not in repr(client) and PLANTED_KEY not in str(client.stats.as_dict())


def test_missing_key_is_a_clear_error_except_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(MissingAPIKeyError, match=KEY_ENV):
        ChatClient("gpt-4.1", api_key_env=KEY_ENV)
    with FakeOpenAIServer(reply=lambda body: "local") as server:
        [result] = make_client(server).complete_many([HELLO])
    assert result.text == "local"


def test_concurrency_bound_speeds_up_slow_server() -> None:
    conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(16)]
    with FakeOpenAIServer(reply=lambda body: "yes", latency=0.2) as server:
        timings = {}
        for concurrency in (1, 8):
            start = time.perf_counter()
            make_client(server, max_concurrency=concurrency).complete_many(conversations)
            timings[concurrency] = time.perf_counter() - start
    assert server.hits == 32
    assert timings[1] >= 16 * 0.2, "concurrency 1 must serialise the requests"
    assert timings[1] / timings[8] >= 3.0, timings


def test_usage_and_cost_are_counted() -> None:
    with FakeOpenAIServer(reply=lambda body: "yes", usage=(1000, 10)) as server:
        client = make_client(server)
        client.complete_many([HELLO, [{"role": "user", "content": "b"}]])
    stats = client.stats.as_dict()
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (2000, 20)
    assert stats["cost_usd"] == pytest.approx((2000 * 2.00 + 20 * 8.00) / 1e6)


def test_price_table() -> None:
    assert price_per_mtok("gpt-4.1") == (2.00, 8.00)
    assert price_per_mtok("gpt-4.1-mini-2025-04-14") == (0.40, 1.60)
    assert price_per_mtok("gpt-4.1-nano") == (0.0, 0.0)
    assert price_per_mtok("Qwen/Qwen2.5-7B") == (0.0, 0.0)


def test_sync_entry_point_works_inside_a_running_loop() -> None:
    with FakeOpenAIServer(reply=lambda body: "from a thread") as server:
        client = make_client(server)

        async def caller() -> str | None:
            return client.complete_many([HELLO])[0].text

        assert asyncio.run(caller()) == "from a thread"
