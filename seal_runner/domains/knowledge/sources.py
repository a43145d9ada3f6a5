"""Where a Table 2 row's self-edits come from, and which model the row updates and questions.

The paper's single-passage table compares self-edits written by the base model, by GPT-4.1 and by
the RL-trained policy. A row is a source plus the model its inner updates start from: GPT-4.1 and
file self-edits are applied to the run's model, while a trained policy is both the writer and the
inner-loop base (its own no-update accuracy is the row's baseline, as in the paper's
"baseline -> adapted" columns). Each source is a `_target_` in `selfedit_sources.<name>` so the
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

from seal_runner.domains.knowledge.data import Article, DataError
from seal_runner.domains.knowledge.pipeline import sample_selfedits, selfedit_sampling, sequences_for
from seal_runner.engines.base import Sampling
from seal_runner.errors import InputError
from seal_runner.records import append_jsonl, read_jsonl

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


class PolicySource:
    """Self-edits sampled by a local model that is also the row's inner-loop base.

    `path=None` is the run's own model (the "base model self-edits" row); a path names a trained
    policy, e.g. `<restem run>/round_1/policy` (the paper's "SEAL" row)."""

    def __init__(
        self, label: str, path: str | None = None, sampling: Mapping[str, Any] | None = None
    ) -> None:
        self.label, self.path = label, path
        self.sampling = sampling_overrides(label, sampling)

    def policy_path(self, run_model: str) -> str:
        if self.path is None:
            return run_model
        path = Path(self.path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"selfedit source {self.label!r}: {self.path} is not a model checkpoint (no config.json); "
                "point it at a restem run's round_<r>/policy directory"
            )
        return str(path)

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
        return sample_selfedits(cfg, sampler, formatter, articles, samples, out, out.stem, sampling)


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
        wanted = {(a.index, s) for a in articles for s in range(samples)}
        if {(r["article"], r["sample"]) for r in read_jsonl(out)} >= wanted:  # all on disk: no engine
            return sample_selfedits(cfg, None, formatter, articles, samples, out, out.stem)
        engine = instantiate(
            self.engine_cfg,
            model_path=model_path,
            max_model_len=cfg.model.max_model_len,
            dtype=cfg.model.dtype,
            seed=cfg.seed,
        )
        try:
            sampling = selfedit_sampling(cfg, self.sampling)
            return sample_selfedits(cfg, engine, formatter, articles, samples, out, out.stem, sampling)
        finally:
            engine.close()


class FileSource:
    """Self-edits read from a JSONL file, one per article, matched by title (or by `article` index
    when the file has no titles). A seal-runner self_edits JSONL from an earlier run works as is."""

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
        """One self-edit per article whatever `samples` asks: the file holds what it holds."""
        done = {(r["article"], 0): r for r in read_jsonl(out)}
        todo = [a for a in articles if (a.index, 0) not in done]
        if todo:
            by_title, by_index = self._read()
            new = []
            for a in todo:
                record = by_title.get(a.title) or (by_index.get(a.index) if not by_title else None)
                text = (record or {}).get("text", "").strip()
                status = "ok" if text else "missing"
                new.append(
                    {
                        "article": a.index,
                        "sample": 0,
                        "title": a.title,
                        "prompt": None,
                        "text": text,
                        "num_tokens": None,
                        "status": status,
                        "sequences": sequences_for(cfg, a, text) if text else [],
                    }
                )
            missing = [r["title"] for r in new if r["status"] == "missing"]
            if len(missing) == len(articles):
                raise DataError(f"{self.path}: no self-edit matches any of the {len(articles)} articles")
            if missing:
                log.warning("%s: no self-edit for %d articles: %s", self.path, len(missing), missing[:5])
            append_jsonl(out, new)
            done.update({(r["article"], 0): r for r in new})
        return done

    def _read(self) -> tuple[dict[str, dict], dict[int, dict]]:
        file = Path(self.path).expanduser()
        if not file.is_file():
            raise DataError(f"{self.path}: no such self-edit file (selfedit_sources.*.path)")
        records = read_jsonl(file)
        for i, r in enumerate(records):
            if not isinstance(r.get("text"), str):
                raise DataError(f"{file}: line {i + 1} has no string 'text' field")
        by_title = {r["title"]: r for r in records if isinstance(r.get("title"), str)}
        by_index = {r["article"]: r for r in records if isinstance(r.get("article"), int)}
        return by_title, by_index
