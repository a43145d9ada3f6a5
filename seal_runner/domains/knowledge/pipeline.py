"""The knowledge domain's three resumable steps, shared by the evaluate and restem stages.

Each step appends its records to a JSONL file as it goes and skips units already on disk:
  sample_selfedits  (article, sample) -> self-edit text and its training sequences
  train_adapters    job key -> inner-update record with the adapter directory
  answer_units      (condition, article) -> graded answers to every question
  answer_logprobs   (condition, article) -> gold-answer log-likelihood of every question
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seal_runner.domains.knowledge.data import Article
from seal_runner.domains.knowledge.evaluate import answer_questions
from seal_runner.domains.knowledge.proxy import answer_pairs
from seal_runner.domains.knowledge.records import (
    AnswerLogprob,
    SelfEdit,
    answer_key,
    selfedit_key,
)
from seal_runner.domains.knowledge.selfedit import drop_cut_line, selfedit_to_sequences
from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.errors import InputError
from seal_runner.inner import SkippedUpdate, train_and_record, update_key
from seal_runner.lora.trainer import InnerJob
from seal_runner.prompts import PromptFormatter, selfedit_prompt
from seal_runner.records import ResumableLog, derive_seed

log = logging.getLogger(__name__)


def prompt_formatter(engine, formatter: PromptFormatter) -> PromptFormatter:
    """A chat API (GPT-4.1, `engine.api=chat`) applies its own template to the user turn; templating
    locally as well would wrap the prompt twice, so such an engine gets the paper's text as is."""
    if getattr(engine, "applies_chat_template", False):
        return PromptFormatter(formatter.tokenizer, chat=False)
    return formatter


def selfedit_prompt_for(cfg: DictConfig, formatter, article: Article) -> str:
    p = cfg.selfedit_prompt
    return formatter(selfedit_prompt(p.template, p.instruction, p.header, article.title, article.context))


def sequences_for(
    cfg: DictConfig, article: Article, text: str, split_newlines: bool | None = None
) -> list[str]:
    """A self-edit's training sequences by the domain's rules; `split_newlines` replaces
    `domain.split_newlines` when given (a ReSTEM round's own rule, `restem.split_newlines_per_round`)."""
    d = cfg.domain
    return selfedit_to_sequences(
        text,
        article.title,
        article.context,
        separator=d.split_separator,
        split_newlines=d.split_newlines if split_newlines is None else split_newlines,
        drop_preamble=d.drop_preamble,
        title_prefix=d.title_prefix,
        append_passage=d.append_passage,
    )


def selfedit_sampling(cfg: DictConfig, overrides: Mapping[str, Any] | None = None) -> Sampling:
    """The run's `sampling`, with a self-edit source's own keys on top (null: not set, so an API
    gets no such field: the reference's GPT-4.1 self-edits used the API's defaults)."""
    return Sampling(**{**OmegaConf.to_container(cfg.sampling), **(overrides or {})})


def sample_selfedits(
    cfg: DictConfig,
    engine,
    formatter,
    articles: list[Article],
    samples: int,
    path: Path,
    seed_tag: object,
    sampling: Sampling | None = None,
    split_newlines: bool | None = None,
) -> dict[tuple[int, int], dict]:
    """`samples` self-edits per article, each seeded from (run seed, seed_tag, article, sample);
    `sampling` defaults to the run's, `split_newlines` (see `sequences_for`) to the domain's."""
    edits = ResumableLog(path, key=selfedit_key)
    todo = edits.todo([(a, s) for a in articles for s in range(samples)], key=lambda u: (u[0].index, u[1]))
    if todo:
        formatter = prompt_formatter(engine, formatter)
        prompts = [selfedit_prompt_for(cfg, formatter, a) for a, _ in todo]
        sampling = sampling or selfedit_sampling(cfg)
        seeds = [derive_seed(cfg.seed, "selfedit", seed_tag, a.index, s) for a, s in todo]
        completions = engine.generate(prompts, sampling, seeds=seeds)
        new = []
        for (a, s), prompt, c in zip(todo, prompts, completions, strict=True):
            cut_off = c.finish_reason == "length"
            new.append(selfedit_record(cfg, a, s, prompt, c.text, c.num_tokens, cut_off, split_newlines))
        edits.append(new)
        statuses = Counter(r["status"] for r in new)
        cut = sum(r.get("cut_line_dropped", False) for r in new)
        if statuses["empty"] or statuses["truncated"]:
            log.warning(
                "%s: of %d new self-edits %d are empty and %d truncated at max_tokens=%s "
                "(%d lost their cut last line)",
                path,
                len(new),
                statuses["empty"],
                statuses["truncated"],
                sampling.max_tokens,
                cut,
            )
    return edits.done


def selfedit_record(
    cfg: DictConfig,
    article: Article,
    sample: int,
    prompt: str,
    raw: str,
    num_tokens: int,
    cut: bool,
    split_newlines: bool | None = None,
) -> dict:
    """One sampled self-edit as stored: the text kept (a cut last line dropped when
    `domain.drop_cut_line`), its status (ok | truncated | empty: empty after that drop too) and its
    training sequences. `raw_text` keeps what the engine returned when the text was changed."""
    text = raw.strip()
    dropped = cut and cfg.domain.drop_cut_line and bool(text)
    if dropped:
        text = drop_cut_line(raw)
    return SelfEdit(
        article.index,
        sample,
        article.title,
        prompt,
        text,
        num_tokens,
        "empty" if not text else ("truncated" if cut else "ok"),
        sequences_for(cfg, article, text, split_newlines),
        cut_line_dropped=dropped,
        raw_text=raw.strip() if dropped else None,
    ).to_json()


def train_adapters(
    cfg: DictConfig, model_path: str, tokenizer, jobs: list[InnerJob], path: Path, adapter_root: Path, tracker
) -> dict[str, dict]:
    """Inner updates for jobs not yet recorded (see `train_and_record`); a job with no sequences is
    recorded as failed."""
    updates = ResumableLog(path, key=update_key)
    todo = updates.todo(jobs, key=lambda job: job.key)
    empty = [job for job in todo if not job.sequences]
    updates.append(
        [SkippedUpdate(job.key, "self-edit produced no training sequences").to_json() for job in empty]
    )
    for job in empty:
        log.warning("%s: inner job %s skipped: its self-edit produced no training sequences", path, job.key)
    todo = [job for job in todo if job.sequences]
    if not todo:
        return updates.done
    new = train_and_record(
        cfg,
        model_path,
        tokenizer,
        todo,
        path,
        adapter_root,
        tracker,
        lambda job: {"sequences": len(job.sequences)},
    )
    return updates.done | {update_key(r): r for r in new}


def answer_units(
    cfg: DictConfig,
    engine,
    grader,
    formatter,
    units: list[tuple[str, Article, LoraAdapter | None]],
    path: Path,
) -> list[dict]:
    """Graded answers for every (condition, article, adapter) unit not yet fully on disk; returns all
    records. A unit missing some answers (its last line torn by an interrupted write) is answered
    again and only the missing questions are appended, so no answer is lost or recorded twice."""
    answers = ResumableLog(path, key=answer_key)
    todo = [u for u in units if not _fully_graded(u, answers.done)]
    if todo:
        new = answer_questions(
            engine,
            grader,
            prompt_formatter(engine, formatter),
            todo,
            cfg.domain.qa_max_tokens,
            cfg.domain.topic_prefix,
        )
        answers.append(answers.todo(new, key=answer_key))
    return answers.records


def answer_logprobs(
    engine, formatter, units: list[tuple[str, Article, LoraAdapter | None]], topic_prefix: bool, path: Path
) -> dict[tuple[str, int], float]:
    """Per (condition, article): the mean over its questions of the mean log-probability per
    gold-answer token under the unit's adapter, teacher-forced with the QA prompt the graded answers
    use. Needs an engine that scores (`qa_engine=hf`); resumable per question like `answer_units`
    (with every score on disk the engine is not touched, so a lazy one is never built)."""
    scored = ResumableLog(path, key=answer_key)
    todo = [
        (condition, article, adapter, qi)
        for condition, article, adapter in units
        for qi in range(len(article.questions))
        if (condition, article.index, qi) not in scored.done
    ]
    if todo:
        if not hasattr(engine, "answer_logprobs"):
            raise InputError(
                f"{type(engine).__name__} cannot score gold answers; the likelihood reward and held-out "
                "answer log-likelihoods need qa_engine=hf"
            )
        formatter = prompt_formatter(engine, formatter)
        by_article = {a.index: answer_pairs(formatter, a, None, topic_prefix) for _, a, _, _ in todo}
        values = engine.answer_logprobs(
            [by_article[a.index][qi] for _, a, _, qi in todo], [adapter for _, _, adapter, _ in todo]
        )
        scored.append(
            [
                AnswerLogprob(c, a.index, qi, v).to_json()
                for (c, a, _, qi), v in zip(todo, values, strict=True)
            ]
        )
    by_unit: dict[tuple[str, int], list[float]] = {}
    wanted = {(condition, article.index) for condition, article, _ in units}
    for r in scored.records:
        if (r["condition"], r["article"]) in wanted:
            by_unit.setdefault((r["condition"], r["article"]), []).append(r["logprob"])
    return {key: sum(v) / len(v) for key, v in by_unit.items()}


def unanswered(units: list[tuple[str, Article, LoraAdapter | None]], records: list[dict]) -> list:
    """The units `answer_units` would still answer given these records (lets a caller skip building
    an engine when nothing is left)."""
    graded = {answer_key(r) for r in records}
    return [u for u in units if not _fully_graded(u, graded)]


def _fully_graded(
    unit: tuple[str, Article, LoraAdapter | None], graded: Container[tuple[str, int, int]]
) -> bool:
    condition, article, _ = unit
    return all((condition, article.index, q) in graded for q in range(len(article.questions)))


def adapter_for(update: dict | None, namespace: str) -> LoraAdapter | None:
    """The engine handle for a recorded update; None when the update failed (the unit is skipped)."""
    if not update or not update.get("adapter"):
        return None
    return LoraAdapter(f"{namespace}/{update['key']}", update["adapter"])
