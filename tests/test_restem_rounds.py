"""ReSTEM round control for the knowledge domain: per-round training files and split rules, checked on
the reference's own round files (tests/data/restem_reference_rounds.json); unset keys change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import compose_config

from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.domain import KnowledgeDomain, round_split_newlines
from seal_runner.engines.base import Completion
from seal_runner.errors import InputError

DATA = json.loads((Path(__file__).parent / "data" / "restem_reference_rounds.json").read_text())


class FixedEngine:
    """Returns the reference's round-2 self-edit for every prompt."""

    def generate(self, prompts, sampling, seeds=None):
        text = DATA["round_2_completion"]["text"]
        return [Completion(text=text, num_tokens=len(text.split()), finish_reason="stop") for _ in prompts]


def _domain(overrides: list[str]) -> KnowledgeDomain:
    cfg = compose_config(["~experiment", "domain.data_path=builtin:demo", "domain.n_articles=2", *overrides])
    settings = {k: v for k, v in cfg.domain.items() if k != "_target_"}
    return KnowledgeDomain(SimpleNamespace(cfg=cfg, formatter=lambda text: text), cfg.restem, **settings)


@pytest.fixture
def round_files(tmp_path) -> list[str]:
    paths = []
    for k, passages in enumerate(DATA["rounds"]):
        path = tmp_path / f"iter{k}_train.json"
        path.write_text(json.dumps(passages))
        paths.append(str(path))
    return paths


def test_round_k_trains_on_the_first_passages_of_file_k(hydra_ctx, round_files):
    domain = _domain(
        [f"restem.train_data_per_round=[{','.join(round_files)}]", "restem.contexts_per_round=2"]
    )
    for k, ranked in enumerate(DATA["ranked"]):  # the passages the reference ranked in that round
        assert [a.title for a in domain.training_contexts(k)] == ranked["titles"][:2]
    pooled = _domain(["restem.contexts_per_round=1"])  # unset: the pool as before, after the held-out 2
    assert [a.title for a in pooled.training_contexts(1)] == [load_articles("builtin:demo")[3].title]


def test_per_round_lists_must_name_every_round(hydra_ctx, round_files):
    for key, value in (
        ("train_data_per_round", f"[{round_files[0]}]"),
        ("split_newlines_per_round", "[true]"),
    ):
        with pytest.raises(InputError, match=f"restem.{key} has 1 entries for restem.rounds=2"):
            _domain([f"restem.{key}={value}"])


def test_each_round_splits_its_self_edits_by_its_own_rule(hydra_ctx, tmp_path):
    assert round_split_newlines(compose_config([]).restem, tmp_path / "round_1") is None
    domain = _domain(["restem.split_newlines_per_round=[true,false]", "restem.samples_per_context=1"])
    contexts = domain.training_contexts(0)[:1]
    lines = [line for line in DATA["round_2_completion"]["text"].splitlines() if line.strip()]
    for k, ranked in enumerate(DATA["ranked"]):
        assert round_split_newlines(domain.r, tmp_path / f"round_{k}") is ranked["split_newlines"]
        out = tmp_path / f"round_{k}"
        out.mkdir()
        (edit,) = domain.sample(FixedEngine(), contexts, out).values()
        expected = len(lines) + 1 if ranked["split_newlines"] else 2  # + the passage copy
        assert len(edit["sequences"]) == expected
    unset = _domain(["restem.samples_per_context=1", "domain.split_newlines=false"])
    (edit,) = unset.sample(FixedEngine(), contexts, tmp_path / "round_9").values()
    assert len(edit["sequences"]) == 2  # unset: domain.split_newlines, whatever the round


def test_paper_restem_preset_ranks_round_2_unsplit(hydra_ctx):
    r = compose_config(["experiment=paper/knowledge_restem"]).restem
    assert list(r.split_newlines_per_round) == [True, False] and r.train_data_per_round is None
    default = compose_config([]).restem
    assert default.split_newlines_per_round is None and default.train_data_per_round is None
