"""Closed choices: each Enum-typed key rejects a typo when the config is composed, naming the key and
the allowed values; `seal-run` stops on one in seconds, before any model loads; the choices print
and serialise as plain strings; an unknown `conditions` row fails before any model load too.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import time
from enum import Enum
from pathlib import Path

import pytest
from conftest import REPO, error_text, seal_run_error
from conftest import compose_config as _compose
from hydra.errors import HydraException
from omegaconf import OmegaConf

from seal_runner.choices import (
    ArcSource,
    Choice,
    GridFormatName,
    LoraMode,
    LossNormalization,
    LrSchedule,
    OnFailure,
    OpenAIApi,
    Reward,
    SelfEditHeader,
    Stage,
    TestInputs,
    TokenLayout,
)
from seal_runner.config import LoraConfig
from seal_runner.domains.knowledge.strategies import ContinualStrategy
from seal_runner.errors import InputError
from seal_runner.graders.lexical import LexicalRule
from seal_runner.records import write_json
from seal_runner.selection import SelectionRule
from seal_runner.tracking import public_config

# key -> (overrides that select the option holding it, its Enum)
CHOICE_KEYS: dict[str, tuple[list[str], type[Choice]]] = {
    "stage": ([], Stage),
    "lora.mode": ([], LoraMode),
    "cpt.mode": ([], LoraMode),
    "lora.loss_normalization": ([], LossNormalization),
    "lora.lr_schedule": ([], LrSchedule),
    "restem.reward": ([], Reward),
    "restem.selection": ([], SelectionRule),
    "continual.strategy": ([], ContinualStrategy),
    "domain.source": (["experiment=demo/arc_cpu"], ArcSource),
    "domain.grid_format": (["experiment=demo/arc_cpu"], GridFormatName),
    "domain.token_layout": (["experiment=demo/arc_cpu"], TokenLayout),
    "domain.test_inputs": (["experiment=demo/arc_cpu"], TestInputs),
    "selfedit_prompt.header": (["experiment=demo/arc_cpu"], SelfEditHeader),
    "grader.rule": ([], LexicalRule),
    "grader.on_failure": (["grader=llm_judge"], OnFailure),
    "engine.api": (["engine=openai"], OpenAIApi),
    "qa_engine.api": (["~experiment", "engine@qa_engine=openai"], OpenAIApi),  # the demo sets hf fields
}


@pytest.mark.parametrize("key", CHOICE_KEYS)
def test_typo_fails_at_composition_naming_the_key_and_the_values(hydra_ctx: None, key: str) -> None:
    select, choice = CHOICE_KEYS[key]
    with pytest.raises(HydraException) as info:
        _compose([*select, f"{key}=banana"])
    text = error_text(info.value)
    assert key in text, text
    assert f"Invalid value 'banana', expected one of [{', '.join(choice.values())}]" in text, text


@pytest.mark.parametrize("key", CHOICE_KEYS)
def test_every_allowed_value_composes_to_its_member(hydra_ctx: None, key: str) -> None:
    select, choice = CHOICE_KEYS[key]
    for value in choice.values():
        held = OmegaConf.select(_compose([*select, f"{key}={value}"]), key)
        assert held is choice(value), (key, value, held)


@pytest.mark.parametrize("choice", sorted({c for _, c in CHOICE_KEYS.values()}, key=lambda c: c.__name__))
def test_members_are_strings_named_by_their_value(choice: type[Choice]) -> None:
    """OmegaConf parses an override by member name; str() and JSON give the value."""
    for member in choice:
        assert isinstance(member, str) and isinstance(member, Enum)
        assert member.name == member.value == str(member) == f"{member}"
        assert json.dumps(member) == f'"{member.value}"'


def test_outputs_hold_plain_strings(hydra_ctx: None, tmp_path: Path) -> None:
    """summary.json-style records and the config sent to W&B carry the value, not an Enum repr."""
    cfg = _compose(["grader=llm_judge"])
    path = tmp_path / "summary.json"
    write_json(path, {"stage": cfg.stage, "lora_mode": cfg.lora.mode, "rule": [cfg.restem.selection]})
    assert json.loads(path.read_text()) == {"stage": "restem", "lora_mode": "fast", "rule": ["best_of_k"]}
    public = public_config(OmegaConf.masked_copy(cfg, ["stage", "lora", "grader"]))
    assert type(public["stage"]) is str and public["stage"] == "restem"
    assert type(public["lora"]["mode"]) is str and type(public["grader"]["on_failure"]) is str


def test_every_stage_is_a_module_with_run() -> None:
    """cli.py imports seal_runner.stages.<stage> and calls its `run(cfg)`."""
    for stage in Stage:
        spec = importlib.util.find_spec(f"seal_runner.stages.{stage}")
        assert spec is not None and spec.origin, stage
        tree = ast.parse(Path(spec.origin).read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body), stage


@pytest.mark.parametrize("stage", ["evaluate", "cpt"])
def test_unknown_condition_fails_before_any_model_load(hydra_ctx: None, monkeypatch, stage: str) -> None:
    module = __import__(f"seal_runner.stages.{stage}", fromlist=["run"])

    def no_setup(cfg):
        raise AssertionError("setup_run (tokenizer, model path) reached with an unknown condition")

    monkeypatch.setattr(module, "setup_run", no_setup)
    cfg = _compose([f"stage={stage}", "conditions=[base,nosuch]"])
    with pytest.raises(InputError) as info:
        module.run(cfg)
    message = str(info.value)
    assert "['nosuch']" in message and "conditions" in message, message
    for row in ["base", "passage", *cfg.selfedit_sources]:
        assert row in message, message


def test_inner_updater_checks_a_mode_built_in_python() -> None:
    """A LoraConfig built in Python skips OmegaConf's check: the updater names the choices before
    loading anything (the model path is never read)."""
    from seal_runner.lora.updater import InnerUpdater

    with pytest.raises(InputError, match=r"lora.mode must be one of \['fast', 'reference'\]"):
        InnerUpdater(LoraConfig(mode="turbo"), "/nonexistent/model", tokenizer=None)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("override", "values"),
    [("lora.mode=banana", "fast, reference"), ("restem.selection=banana", "best_of_k, positive_gain")],
)
def test_seal_run_stops_on_a_typo_in_seconds(tmp_path: Path, override: str, values: str) -> None:
    """The default job would start vLLM and sample before touching the inner loop; the typo must
    stop it at composition, with Hydra's short message and no traceback. Run from outside the
    repo without PYTHONPATH, so the configs composed are the installed package's."""
    assert not tmp_path.resolve().is_relative_to(REPO)
    start = time.perf_counter()
    out = seal_run_error(
        override, "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, unset=("PYTHONPATH",)
    )
    seconds = time.perf_counter() - start
    print(f"seal-run {override}: stopped after {seconds:.1f} s")
    assert f"Error merging override {override}" in out and values in out, out
    assert seconds < 20, f"took {seconds:.1f} s: something ran before the config was checked"
    assert not (tmp_path / "run").exists()
