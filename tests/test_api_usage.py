"""Per-run API usage: the judge's and the `openai` engines' requests, tokens and cost reach the tracker."""

from __future__ import annotations

import pytest
from fake_openai_server import FakeOpenAIServer, gullible_judge
from omegaconf import OmegaConf

from seal_runner.config import LLMJudgeGraderConfig, OpenAIEngineConfig
from seal_runner.engines.base import Sampling
from seal_runner.graders.base import GradeItem
from seal_runner.stages.common import RunContext


class RecordingTracker:
    """Keeps what the run would send to W&B."""

    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.logged.append(metrics)


def reply(body: dict) -> str:
    return gullible_judge(body) if "messages" in body else "Paris"


def context(server: FakeOpenAIServer, tmp_path, judge_model: str = "gpt-4.1") -> RunContext:
    engine = OmegaConf.structured(OpenAIEngineConfig(base_url=server.base_url, api_key_env="SEAL_TEST_UNSET"))
    grader = OmegaConf.structured(LLMJudgeGraderConfig())
    grader.client.base_url, grader.client.model = server.base_url, judge_model
    grader.client.api_key_env, grader.client.cache_dir = "SEAL_TEST_UNSET", None
    cfg = OmegaConf.create(
        {"seed": 0, "model": {"max_model_len": 512, "dtype": "auto"}, "grader": grader, "engine": engine}
    )
    cfg.qa_engine = cfg.engine
    return RunContext(cfg, tmp_path, "/models/policy", None, None, RecordingTracker())


def test_usage_of_judge_and_engines_is_summed_and_logged(tmp_path) -> None:
    with FakeOpenAIServer(reply=reply, usage=(1000, 10)) as server:
        ctx = context(server, tmp_path)
        for _ in range(2):  # the outer loop builds one engine per policy: their usage adds up
            ctx.engines_for("/models/policy").qa.generate(["q1", "q2"], Sampling(max_tokens=4))
        grader = ctx.grader()
        assert ctx.grader() is grader, "one grader per run, so its counters cover the run"
        grader.grade([GradeItem("Q?", "Paris", "Paris"), GradeItem("Q?", "Paris", "Rome")])
        metrics = ctx.log_api_usage()
    assert ctx.tracker.logged == [metrics]
    assert metrics["api/engine/requests"] == 4 and metrics["api/engine/completion_tokens"] == 40
    assert metrics["api/engine/cost_usd"] == 0.0, "a self-served model has no price"
    assert metrics["api/judge/requests"] == 2 and metrics["api/judge/judged"] == 2
    assert metrics["api/judge/cost_usd"] == pytest.approx((2000 * 2.00 + 20 * 8.00) / 1e6)
    assert metrics["api/judge/disagreement_rate"] == 0.0
    assert all(isinstance(v, int | float) for v in metrics.values())


def test_nothing_is_logged_without_api_use(tmp_path) -> None:
    with FakeOpenAIServer() as server:
        ctx = context(server, tmp_path)
        ctx.cfg.grader = {"_target_": "seal_runner.graders.lexical.LexicalGrader", "rule": "contains"}
        ctx.grader()
        assert ctx.log_api_usage() == {}
    assert ctx.tracker.logged == []


class CountedEngine:
    """An engine that counts its builds and closes."""

    built: list[str] = []
    closed: list[str] = []

    def __init__(self, model_path: str, **_: object) -> None:
        CountedEngine.built.append(model_path)
        self.model_path = model_path

    def close(self) -> None:
        CountedEngine.closed.append(self.model_path)


def test_engines_are_built_on_first_use_only(tmp_path) -> None:
    """A resumed stage with every record on disk builds no engine; one that is used is built once
    and closed once, and a closed engine is not rebuilt behind the caller's back."""
    CountedEngine.built, CountedEngine.closed = [], []
    engine = {"_target_": f"{__name__}.CountedEngine"}
    cfg = OmegaConf.create({"seed": 0, "model": {"max_model_len": 512, "dtype": "auto"}})
    cfg.engine, cfg.qa_engine = engine, {**engine, "role": "qa"}
    ctx = RunContext(cfg, tmp_path, "/models/policy", None, None, RecordingTracker())
    ctx.engines_for("/models/unused").close()
    engines = ctx.engines_for("/models/used")
    assert engines.qa.model_path == "/models/used"  # the QA engine only: the sampler is never used
    engines.close()
    assert CountedEngine.built == ["/models/used"] and CountedEngine.closed == ["/models/used"]
    with pytest.raises(RuntimeError, match="after close"):
        _ = engines.qa.model_path
