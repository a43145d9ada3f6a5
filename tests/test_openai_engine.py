"""`engine=openai` against a real local HTTP server: payloads, seeds, retries, runtime LoRA lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_openai_server import FakeOpenAIServer
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from seal_runner.config import register_configs
from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.engines.openai_engine import LoraServingError, OpenAIEngine
from seal_runner.openai_api import APIFailure

SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_tokens=12)


def echo(body: dict) -> str:
    """Names what was asked of which model, so each completion shows where it came from."""
    content = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
    return f"{body['model']}:{content}"


def make_engine(server: FakeOpenAIServer, **overrides) -> OpenAIEngine:
    settings = {
        "base_url": server.base_url,
        "api_key_env": "SEAL_TEST_UNSET_KEY",
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
        "timeout": 2.0,
    }
    return OpenAIEngine("/models/policy", **{**settings, **overrides})


def adapter(tmp_path: Path, name: str) -> LoraAdapter:
    (tmp_path / name).mkdir(exist_ok=True)
    return LoraAdapter(f"run/{name}", str(tmp_path / name))


def test_completions_mode_sends_raw_prompts_seeds_and_sampling() -> None:
    with FakeOpenAIServer(reply=echo, usage=(30, 12), finish_reason="length") as server:
        engine = make_engine(server)
        out = engine.generate(["<|im_start|>user\nA", "B"], SAMPLING, seeds=[11, 12])
    assert engine.applies_chat_template is False
    assert set(server.paths) == {"/v1/completions"}
    bodies = sorted(server.bodies, key=lambda b: b["seed"])
    assert [b["prompt"] for b in bodies] == ["<|im_start|>user\nA", "B"]
    assert [b["seed"] for b in bodies] == [11, 12]
    assert all(b["model"] == "/models/policy" for b in bodies), "the served name defaults to model_path"
    assert all((b["temperature"], b["top_p"], b["max_tokens"]) == (0.7, 0.9, 12) for b in bodies)
    assert [c.text for c in out] == ["/models/policy:<|im_start|>user\nA", "/models/policy:B"]
    assert all(c.num_tokens == 12 and c.finish_reason == "length" for c in out)


def test_chat_mode_sends_each_prompt_as_one_user_message() -> None:
    with FakeOpenAIServer(reply=echo) as server:
        engine = make_engine(server, api="chat", model="gpt-4.1")
        [completion] = engine.generate(["Write implications."], SAMPLING, seeds=[5])
    assert engine.applies_chat_template is True
    [body] = server.bodies
    assert server.paths == ["/v1/chat/completions"]
    assert body["messages"] == [{"role": "user", "content": "Write implications."}]
    assert body["model"] == "gpt-4.1" and body["seed"] == 5
    assert completion.text == "gpt-4.1:Write implications." and completion.finish_reason == "stop"


def test_unset_sampling_parameters_are_not_sent() -> None:
    """None = not set: the server's default applies (the reference asked GPT-4.1 with none set)."""
    with FakeOpenAIServer(reply=echo) as server:
        make_engine(server, api="chat").generate(["Write implications."], Sampling(None, None, None))
        make_engine(server).generate(["A"], Sampling(temperature=1.0, top_p=None, max_tokens=None))
    unset, partly = server.bodies
    assert not {"temperature", "top_p", "max_tokens"} & unset.keys()
    assert partly["temperature"] == 1.0 and not {"top_p", "max_tokens"} & partly.keys()


def test_no_seeds_means_no_seed_field() -> None:
    with FakeOpenAIServer(reply=echo) as server:
        make_engine(server).generate(["x"], SAMPLING)
    assert "seed" not in server.bodies[0]


def test_retries_transient_failures_and_counts_usage() -> None:
    with FakeOpenAIServer(script=["500", "429", "drop"], reply=echo, usage=(7, 3)) as server:
        engine = make_engine(server, max_concurrency=1)
        out = engine.generate(["a", "b"], SAMPLING)
    assert [c.text for c in out] == ["/models/policy:a", "/models/policy:b"]
    usage = engine.usage()
    assert (usage["requests"], usage["retries"], usage["failures"]) == (5, 3, 0)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (14, 6)


def test_exhausted_retries_raise_instead_of_returning_a_blank_sample() -> None:
    with FakeOpenAIServer(script=["500"] * 5) as server:
        engine = make_engine(server, max_retries=2)
        with pytest.raises(APIFailure, match="3 attempt"):
            engine.generate(["a"], SAMPLING)


def test_adapters_are_loaded_used_by_name_and_unloaded(tmp_path) -> None:
    first, second = adapter(tmp_path, "a0"), adapter(tmp_path, "a1")
    with FakeOpenAIServer(reply=echo, runtime_lora=True) as server:
        engine = make_engine(server, max_loras=1)
        out = engine.generate(["p0", "p1", "p2", "p3"], SAMPLING, adapters=[first, None, second, first])
    assert [c.text for c in out] == ["run/a0:p0", "/models/policy:p1", "run/a1:p2", "run/a0:p3"]
    # max_loras=1: one adapter resident at a time, each unloaded before the next is loaded
    assert [(route.rsplit("/", 1)[1], body["lora_name"]) for route, body in server.lora_calls] == [
        ("load_lora_adapter", "run/a0"),
        ("unload_lora_adapter", "run/a0"),
        ("load_lora_adapter", "run/a1"),
        ("unload_lora_adapter", "run/a1"),
    ]
    assert server.lora_calls[0][1]["lora_path"] == str(tmp_path / "a0")
    assert server.loaded_adapters == {}


def test_relative_adapter_paths_are_sent_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = adapter(Path("."), "rel")
    with FakeOpenAIServer(reply=echo, runtime_lora=True) as server:
        make_engine(server).generate(["p"], SAMPLING, adapters=[relative])
    assert server.lora_calls[0][1]["lora_path"] == str(tmp_path / "rel")


def test_adapter_left_loaded_by_an_interrupted_run_is_reloaded(tmp_path) -> None:
    stale = adapter(tmp_path, "stale")
    with FakeOpenAIServer(reply=echo, runtime_lora=True) as server:
        server.loaded_adapters[stale.name] = "/old/path"
        [completion] = make_engine(server).generate(["p"], SAMPLING, adapters=[stale])
    routes = [route.rsplit("/", 1)[1] for route, _ in server.lora_calls]
    assert routes == ["load_lora_adapter", "unload_lora_adapter", "load_lora_adapter", "unload_lora_adapter"]
    assert completion.text == "run/stale:p" and server.loaded_adapters == {}


def test_adapters_are_unloaded_even_when_generation_fails(tmp_path) -> None:
    with FakeOpenAIServer(script=["500"] * 5, runtime_lora=True) as server:
        engine = make_engine(server, max_retries=1)
        with pytest.raises(APIFailure):
            engine.generate(["p"], SAMPLING, adapters=[adapter(tmp_path, "a")])
    assert [route.rsplit("/", 1)[1] for route, _ in server.lora_calls] == [
        "load_lora_adapter",
        "unload_lora_adapter",
    ]
    assert server.loaded_adapters == {}


def test_server_without_runtime_lora_gives_the_fix_in_the_error(tmp_path) -> None:
    """The reference's issue #3: a server without runtime LoRA answers 404 on load_lora_adapter."""
    with FakeOpenAIServer(reply=echo, runtime_lora=False) as server:
        engine = make_engine(server, max_lora_rank=20)
        with pytest.raises(LoraServingError) as info:
            engine.generate(["p"], SAMPLING, adapters=[adapter(tmp_path, "a")])
    message = str(info.value)
    assert "HTTP 404" in message and "no runtime LoRA endpoints" in message and "run/a" in message
    assert "--enable-lora" in message and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in message
    assert "--max-lora-rank 32" in message, "the rank hint is rounded up to a rank vLLM accepts"
    assert server.hits == 0, "nothing is generated without the adapter"


def test_api_key_comes_from_the_named_variable(monkeypatch) -> None:
    monkeypatch.setenv("SEAL_TEST_ENGINE_KEY", "sk-PLANTED-engine")
    with FakeOpenAIServer(reply=echo, runtime_lora=True) as server:
        engine = make_engine(server, api_key_env="SEAL_TEST_ENGINE_KEY")
        engine.generate(["p"], SAMPLING)
    assert server.auth_headers == ["Bearer sk-PLANTED-engine"]
    assert "sk-PLANTED-engine" not in repr(engine) and "sk-PLANTED-engine" not in str(engine.usage())


def test_engine_openai_from_config() -> None:
    register_configs()
    with (
        FakeOpenAIServer(reply=echo) as server,
        initialize_config_module("seal_runner.conf", version_base="1.3"),
    ):
        cfg = compose("config", overrides=["engine=openai", f"engine.base_url={server.base_url}"])
        engine = instantiate(
            cfg.engine, model_path="/models/policy", max_model_len=1024, dtype="auto", seed=0
        )
        [completion] = engine.generate(["q"], Sampling(max_tokens=4))
    assert isinstance(engine, OpenAIEngine) and completion.text == "/models/policy:q"
    assert engine.max_loras == cfg.engine.max_loras


def test_adapter_the_server_cannot_find_is_not_blamed_on_missing_endpoints(tmp_path) -> None:
    with FakeOpenAIServer(reply=echo, runtime_lora=True) as server:
        engine = make_engine(server)
        with pytest.raises(LoraServingError) as info:
            engine.unload_adapter(adapter(tmp_path, "never-loaded"))
    assert "HTTP 404" in str(info.value) and "refused" in str(info.value)
    assert "no runtime LoRA endpoints" not in str(info.value)
