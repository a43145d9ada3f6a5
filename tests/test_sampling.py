"""Self-edit sampling: Table 2 sources use the run's `sampling` unless they set their own keys, and
an unset (None) parameter is left to the engine.

The reference sampled its own model's self-edits at temperature 1, top_p 0.95 and up to 8192 new
tokens, and asked GPT-4.1 with no sampling parameter at all (make_squad_data_openai.py).
"""

from __future__ import annotations

import pytest
from conftest import compose_config
from fake_openai_server import FakeOpenAIServer
from hydra.utils import instantiate

from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.sources import EngineSource, PolicySource
from seal_runner.engines.base import Completion, Sampling
from seal_runner.errors import InputError
from seal_runner.prompts import PromptFormatter

RAW = PromptFormatter(None, chat=False)


class RecordingEngine:
    """The Engine protocol, recording the sampling it was asked for."""

    def __init__(self) -> None:
        self.sampling: list[Sampling] = []

    def generate(self, prompts, sampling, adapters=None, seeds=None) -> list[Completion]:
        self.sampling.append(sampling)
        return [Completion("The lamp is green.", 5, "stop") for _ in prompts]


def test_the_gpt_source_sends_no_sampling_parameter_by_default(hydra_ctx, tmp_path) -> None:
    with FakeOpenAIServer(reply=lambda body: "The lamp is green.") as server:
        cfg = compose_config(
            [
                f"selfedit_sources.openai.engine.base_url={server.base_url}",
                "selfedit_sources.openai.engine.api_key_env=SEAL_TEST_UNSET_KEY",
            ]
        )
        source = instantiate(cfg.selfedit_sources.openai, _recursive_=False)
        articles = load_articles(cfg.domain.data_path, 0, 1)
        source.selfedits(cfg, None, RAW, articles, tmp_path / "openai.jsonl", "/models/policy")
    [body] = server.bodies
    assert body["model"] == "gpt-4.1" and cfg.sampling.top_p == 0.95
    assert not {"temperature", "top_p", "max_tokens"} & body.keys()


def test_a_source_sets_its_own_sampling_keys_over_the_runs(hydra_ctx, tmp_path) -> None:
    cfg = compose_config(["sampling.max_tokens=99"])
    articles = load_articles(cfg.domain.data_path, 0, 1)
    engine = RecordingEngine()
    PolicySource("run's", None).selfedits(cfg, engine, RAW, articles, tmp_path / "a.jsonl", "m")
    PolicySource("own", None, {"top_p": None}).selfedits(
        cfg, engine, RAW, articles, tmp_path / "b.jsonl", "m"
    )
    assert engine.sampling == [Sampling(1.0, 0.95, 99), Sampling(1.0, None, 99)]


@pytest.mark.parametrize("make", [lambda s: PolicySource("x", None, s), lambda s: EngineSource("x", {}, s)])
def test_unknown_source_sampling_key_fails_naming_it(make) -> None:
    with pytest.raises(InputError, match=r"sampling\.top_pp .*top_p"):
        make({"top_pp": 0.9})


def test_hf_engine_fills_unset_parameters_like_vllm(tiny_model_dir) -> None:
    """Unset: temperature 1, top_p 1, and new tokens up to the model's context."""
    from conftest import smollm2_tokenizer

    from seal_runner.engines.hf_engine import HFEngine

    prompt, room = "The lamp is", 6
    context = len(smollm2_tokenizer()(prompt).input_ids) + room
    engine = HFEngine(str(tiny_model_dir), max_model_len=context, dtype="float32", device="cpu")
    [unset] = engine.generate([prompt], Sampling(None, None, None), seeds=[3])
    [explicit] = engine.generate([prompt], Sampling(1.0, 1.0, room), seeds=[3])
    assert unset == explicit and unset.num_tokens <= room
