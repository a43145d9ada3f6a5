"""The OpenAI-API components against a real `vllm serve` of SmolLM2 on 127.0.0.1 with runtime LoRA.

The judge grades through the server end to end, and the `openai` engine generates from the base
model and from a LoRA adapter loaded at runtime (trained here to state an invented fact), which is
unloaded afterwards. The server-without-LoRA error is covered against the fake server in
test_openai_engine.py, which saves a second vLLM start-up.
"""

from __future__ import annotations

import httpx
import pytest
import test_engines_integration as shared
from vllm_server import VLLMServer

from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.engines.openai_engine import LoraServingError, OpenAIEngine
from seal_runner.graders.base import GradeItem
from seal_runner.graders.lexical import LexicalGrader
from seal_runner.graders.llm_judge import LLMJudgeGrader
from seal_runner.openai_api import APIFailure, ChatClient, Request
from seal_runner.prompts import qa_prompt

# One vLLM engine at a time: make test's workers run every test of the `vllm` group in one process.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("vllm")]

NO_KEY = "SEAL_TEST_UNSET_KEY"  # a loopback server needs no key
# The SmolLM2 adapter trained to state an invented fact, and the QA prompt that asks for it.
fact_adapter, prompt = shared.fact_adapter, shared.prompt


@pytest.fixture(scope="session")
def vllm_server(smollm2_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    with VLLMServer(smollm2_path, log, runtime_lora=True, max_lora_rank=16, max_loras=2) as server:
        yield server


@pytest.fixture
def engine(vllm_server: VLLMServer) -> OpenAIEngine:
    return OpenAIEngine(
        vllm_server.model, base_url=vllm_server.base_url, api_key_env=NO_KEY, max_loras=2, max_lora_rank=16
    )


def test_llm_judge_end_to_end(vllm_server: VLLMServer, tmp_path) -> None:
    items = [
        GradeItem("Topic: France\nWhat is the capital of France?", "Paris", "The capital is Paris."),
        GradeItem("Topic: France\nWhat is the capital of France?", "Paris", "Berlin."),
        GradeItem("Topic: Mars\nWhat colour is Mars?", "red", "Mars is red."),
        GradeItem("Topic: Mars\nWhat colour is Mars?", "red", ""),
    ]

    def judge() -> LLMJudgeGrader:
        client = ChatClient(
            vllm_server.model, base_url=vllm_server.base_url, api_key_env=NO_KEY, cache_dir=tmp_path
        )
        return LLMJudgeGrader(client, cross_check=LexicalGrader("contains"))

    first = judge()
    verdicts = first.grade(items)
    assert [v.correct is not None for v in verdicts] == [True] * 4, verdicts
    assert all(isinstance(v.detail["judge_reply"], str) and v.detail["judge_reply"] for v in verdicts[:3])
    stats = first.stats
    assert (stats["judged"], stats["empty"], stats["ungraded"], stats["compared"]) == (3, 1, 0, 3)
    client = stats["client"]
    assert (client["requests"], client["failures"], client["cache_hits"]) == (3, 0, 0)
    assert client["prompt_tokens"] > 3 * 100 and client["completion_tokens"] >= 3

    again = judge()  # a fresh client on the same cache: a rerun costs no request
    assert [v.correct for v in again.grade(items)] == [v.correct for v in verdicts]
    assert (again.stats["client"]["requests"], again.stats["client"]["cache_hits"]) == (0, 3)


def test_engine_generates_from_the_base_model(engine: OpenAIEngine, prompt: str) -> None:
    [greedy] = engine.generate([prompt], Sampling(max_tokens=24))
    assert greedy.text.strip() and 0 < greedy.num_tokens <= 24
    assert greedy.finish_reason in ("stop", "length")
    sampling = Sampling(temperature=1.0, top_p=0.95, max_tokens=16)
    first = engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    again = engine.generate([prompt] * 3, sampling, seeds=[1, 2, 3])
    assert [c.text for c in first] == [c.text for c in again], "per-request seeds reproduce samples"
    assert len({c.text for c in first}) > 1
    assert engine.usage()["completion_tokens"] >= greedy.num_tokens


def test_runtime_lora_changes_the_answer_then_unloads(
    engine: OpenAIEngine,
    vllm_server: VLLMServer,
    fact_adapter: LoraAdapter,
    prompt: str,
) -> None:
    base, adapted = engine.generate([prompt, prompt], Sampling(max_tokens=32), [None, fact_adapter])
    assert "oskellan" not in base.text.lower()
    assert "oskellan" in adapted.text.lower(), adapted.text
    assert adapted.text != base.text

    served = httpx.get(f"{vllm_server.base_url}/models", timeout=10).json()["data"]
    assert fact_adapter.name not in {m["id"] for m in served}, "the adapter must be unloaded after use"
    with pytest.raises(APIFailure, match="NotFoundError"):
        engine.client.request_many([Request(prompt, model=fact_adapter.name)], max_tokens=4)
    with pytest.raises(LoraServingError, match="HTTP 404"):
        engine.unload_adapter(fact_adapter)


def test_chat_mode_matches_locally_templated_completions(
    engine: OpenAIEngine,
    vllm_server: VLLMServer,
    fact_adapter: LoraAdapter,
    prompt: str,
) -> None:
    """In chat mode the server applies the chat template: the un-templated prompt must give the
    same greedy answers as the locally templated prompt through raw completions."""
    chat = OpenAIEngine(
        vllm_server.model, base_url=vllm_server.base_url, api_key_env=NO_KEY, api="chat", max_lora_rank=16
    )
    raw_prompt = qa_prompt(*shared.QUESTION)
    sampling = Sampling(max_tokens=32)
    via_chat = chat.generate([raw_prompt, raw_prompt], sampling, [None, fact_adapter])
    via_completions = engine.generate([prompt, prompt], sampling, [None, fact_adapter])
    assert [c.text for c in via_chat] == [c.text for c in via_completions]
    assert "oskellan" in via_chat[1].text.lower()
