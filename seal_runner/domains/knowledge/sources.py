"""Where a Table 2 row's self-edits come from, and which model the row updates and questions.

The paper's single-passage table compares self-edits written by the base model, by GPT-4.1 and by
the RL-trained policy. A row is a source plus the model its inner updates start from: GPT-4.1 and
file self-edits are applied to the run's model, while a trained policy is by default both the writer
and the inner-loop base (its own no-update accuracy is the row's baseline, as in the paper's
"baseline -> adapted" columns), or with `learner: run` a writer only. Each source is a `_target_` in `selfedit_sources.<name>` so the
stage never branches on the kind.

A sampling source may carry its own `sampling` keys over the run's: the reference asked GPT-4.1
with none set (the API's defaults: temperature 1, top_p 1, no token limit), and its own model with
temperature 1, top_p 0.95 and 8192 new tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from seal_runner.choices import Learner
from seal_runner.domains.knowledge.data import Article, DataError
from seal_runner.domains.knowledge.pipeline import sample_selfedits, selfedit_sampling, sequences_for
from seal_runner.domains.knowledge.records import SelfEdit, selfedit_key
from seal_runner.engines.base import LazyEngine, Sampling
from seal_runner.errors import InputError
from seal_runner.records import ResumableLog, read_jsonl

log = logging.getLogger(__name__)


def sampling_overrides(label: str, sampling: Mapping[str, Any] | None) -> dict[str, Any]:
    """A source's `sampling` keys (null = not set), checked now rather than at the first request."""
    overrides = dict(sampling or {})
    allowed = [f.name for f in fields(Sampling)]
    unknown = sorted(overrides.keys() - set(allowed))
    if unknown:
        raise InputError(
            f"selfedit source {label!r}: sampling.{unknown[0]} is not a sampling key; allowed: {allowed}"
        )
    return overrides


def sample_with_own_engine(
    cfg: DictConfig,
    engine_cfg: DictConfig,
    model_path: str,
    formatter,
    articles: list[Article],
    samples: int,
    out: Path,
    sampling: Sampling,
) -> dict[tuple[int, int], dict]:
    """Self-edits from an engine of the source's own, built only when one is missing from `out`
    and closed once they are sampled."""
    engine = LazyEngine(
        lambda: instantiate(
            engine_cfg,
            model_path=model_path,
            max_model_len=cfg.model.max_model_len,
            dtype=cfg.model.dtype,
            seed=cfg.seed,
        )
    )
    try:
        return sample_selfedits(cfg, engine, formatter, articles, samples, out, out.stem, sampling)
    finally:
        engine.close()


class PolicySource:
    """Self-edits sampled by a local model.

    `path=None` is the run's own model (the "base model self-edits" row); a path names a trained
    policy, e.g. `<restem run>/round_1/policy`. `learner=writer` (the paper's "SEAL" row): that
    policy is also the row's inner-loop base; `learner=run`: the run's model learns its self-edits,
    as it learns GPT-4.1's, so the policy is judged as a writer alone, apart from what its training
    did to its own knowledge (choices.Learner). Such a writer samples with its own `engine`."""

    def __init__(
        self,
        label: str,
        path: str | None = None,
        sampling: Mapping[str, Any] | None = None,
        learner: str = Learner.writer,
    ) -> None:
        self.label, self.path = label, path
        self.sampling = sampling_overrides(label, sampling)
        if learner not in Learner.values():
            raise InputError(
                f"selfedit source {label!r}: learner={learner!r}; choose from {', '.join(Learner.values())}"
            )
        self.learner = Learner(learner)

    def writer_path(self, run_model: str) -> str:
        if self.path is None:
            return run_model
        path = Path(self.path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"selfedit source {self.label!r}: {self.path} is not a model checkpoint (no config.json); "
                "point it at a restem run's round_<r>/policy directory"
            )
        return str(path)

    def policy_path(self, run_model: str) -> str:
        """The model this row updates and questions."""
        return self.writer_path(run_model) if self.learner == Learner.writer else run_model

    def selfedits(
        self,
        cfg: DictConfig,
        sampler,
        formatter,
        articles: list[Article],
        out: Path,
        model_path: str,
        samples: int = 1,
    ) -> dict[tuple[int, int], dict]:
        """`sampler` serves `model_path`, the row's learner; a writer that is another model gets an
        engine of its own (`cfg.engine`) for as long as it samples."""
        sampling = selfedit_sampling(cfg, self.sampling)
        writer = self.writer_path(model_path)
        if writer == model_path:
            return sample_selfedits(cfg, sampler, formatter, articles, samples, out, out.stem, sampling)
        return sample_with_own_engine(cfg, cfg.engine, writer, formatter, articles, samples, out, sampling)


class EngineSource:
    """Self-edits from another model behind an engine (GPT-4.1 in the paper, or any
    OpenAI-compatible server), applied to the run's model."""

    def __init__(self, label: str, engine: DictConfig, sampling: Mapping[str, Any] | None = None) -> None:
        self.label, self.engine_cfg = label, engine
        self.sampling = sampling_overrides(label, sampling)

    def policy_path(self, run_model: str) -> str:
        return run_model

    def selfedits(
        self,
        cfg: DictConfig,
        sampler,
        formatter,
        articles: list[Article],
        out: Path,
        model_path: str,
        samples: int = 1,
    ) -> dict[tuple[int, int], dict]:
        sampling = selfedit_sampling(cfg, self.sampling)
        return sample_with_own_engine(
            cfg, self.engine_cfg, model_path, formatter, articles, samples, out, sampling
        )


class FileSource:
    """Self-edits read from a JSONL file, matched to articles by title (or by `article` index when the
    file has no titles) and to samples by `sample` (0 when absent). A seal-runner self_edits JSONL from
    an earlier run works as is, all its samples included: the same self-edits can be scored again under
    another learner or regime, paired with the first scoring."""

    def __init__(self, label: str, path: str) -> None:
        self.label, self.path = label, path

    def policy_path(self, run_model: str) -> str:
        return run_model

    def selfedits(
        self,
        cfg: DictConfig,
        sampler,
        formatter,
        articles: list[Article],
        out: Path,
        model_path: str,
        samples: int = 1,
    ) -> dict[tuple[int, int], dict]:
        """Up to `samples` self-edits per article: the samples 0..samples-1 the file holds (a file
        with one self-edit per article gives one, whatever `samples` asks)."""
        edits = ResumableLog(out, key=selfedit_key)
        todo = edits.todo(
            [(a, s) for a in articles for s in range(samples)], key=lambda item: (item[0].index, item[1])
        )
        if todo:
            by_title, by_index = self._read()
            new = []
            for a, sample in todo:
                key = (a.title, sample) if by_title else (a.index, sample)
                record = (by_title or by_index).get(key)
                if record is None and sample > 0:
                    continue  # the file holds fewer samples of this article
                # No record: a failed update, counted. An empty one (a sampled self-edit that came out
                # empty) trains on the passage alone, as it did when it was sampled.
                text = (record or {}).get("text", "").strip()
                status = "missing" if record is None else ("ok" if text else "empty")
                sequences = [] if record is None else sequences_for(cfg, a, text)
                new.append(SelfEdit(a.index, sample, a.title, None, text, None, status, sequences).to_json())
            missing = [r["title"] for r in new if r["status"] == "missing"]
            if len(missing) == len(articles):
                raise DataError(f"{self.path}: no self-edit matches any of the {len(articles)} articles")
            if missing:
                log.warning("%s: no self-edit for %d articles: %s", self.path, len(missing), missing[:5])
            edits.append(new)
        return edits.done

    def _read(self) -> tuple[dict[tuple[str, int], dict], dict[tuple[int, int], dict]]:
        file = Path(self.path).expanduser()
        if not file.is_file():
            raise DataError(f"{self.path}: no such self-edit file (selfedit_sources.*.path)")
        records = read_jsonl(file)
        for i, r in enumerate(records):
            if not isinstance(r.get("text"), str):
                raise DataError(f"{file}: line {i + 1} has no string 'text' field")
            if not isinstance(r.get("sample", 0), int):
                raise DataError(f"{file}: line {i + 1} has a 'sample' that is not an integer")
        by_title = {(r["title"], r.get("sample", 0)): r for r in records if isinstance(r.get("title"), str)}
        by_index = {
            (r["article"], r.get("sample", 0)): r for r in records if isinstance(r.get("article"), int)
        }
        return by_title, by_index
