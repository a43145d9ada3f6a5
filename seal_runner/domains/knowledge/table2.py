"""The knowledge domain's evaluation table (paper Table 2), which `stage=evaluate` runs on one set of
held-out articles (`KnowledgeDomain.evaluate_conditions`).

Rows: `base` (no update), `passage` (update on the passage alone), and one row per self-edit source
named in `conditions` and defined in `selfedit_sources` (the run's model, an OpenAI-compatible
model, a trained policy, a JSONL file; see domains/knowledge/sources.py). A row whose source is a
trained policy updates and questions that policy, so its own no-update accuracy is measured too.

Steps, each resumable from the run dir:
  self_edits/<row>.jsonl   one self-edit per article (prompt, text, tokens, status, sequences)
  updates.jsonl            one inner update per (row, article): steps, losses, seconds, failure
  results.jsonl            one graded answer per (row, article, question)
  summary.json             macro accuracy ± SE and bootstrap 95% CI per row; its baseline and gain
                           (with a paired 95% CI) over the articles whose update succeeded; failed
                           updates; timings, versions; `plots`
  table2.png               the rows' adapted accuracies as bars with their CIs (also logged to W&B)
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from seal_runner.config import HFEngineConfig
from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import (
    article_accuracies,
    condition_accuracies,
    mean_and_se,
    mean_over_samples,
    paired_gain,
)
from seal_runner.domains.knowledge.pipeline import adapter_for, answer_logprobs, answer_units, train_adapters
from seal_runner.domains.knowledge.report import difference_line, plot_table2
from seal_runner.errors import InputError
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import derive_seed
from seal_runner.stages.common import RunContext, versions
from seal_runner.stats import bootstrap_mean_ci, paired_difference

log = logging.getLogger(__name__)

HF_ENGINE = HFEngineConfig._target_  # the one engine that scores gold answers by teacher forcing
BUILT_IN = {"base": "base model (no update)", "passage": "train on passage"}


@dataclass
class Row:
    name: str
    label: str
    source: object | None  # None for the built-in rows
    policy: str  # the model this row updates and questions
    baseline: str  # the condition holding that model's no-update answers


def check_conditions(cfg: DictConfig) -> None:
    """Fail before any model load when a row of `conditions` is neither built in nor a key of
    `selfedit_sources` (rows are open-ended: a preset can add sources, so this is no Enum), when
    `evaluate.compare` names a row that is not in `conditions`, or when `evaluate.likelihood` asks a
    QA engine that cannot score gold answers."""
    allowed = [*BUILT_IN, *cfg.selfedit_sources]
    unknown = [name for name in cfg.conditions if name not in allowed]
    if unknown:
        raise InputError(
            f"conditions: {unknown} unknown; a row is built in ({', '.join(BUILT_IN)}) or a key of "
            f"selfedit_sources ({', '.join(cfg.selfedit_sources)})"
        )
    e = cfg.evaluate
    if e.samples < 1:
        raise InputError(f"evaluate.samples={e.samples}: at least one self-edit per article")
    for pair in e.compare:
        if len(pair) != 2 or any(name not in cfg.conditions for name in pair):
            raise InputError(
                f"evaluate.compare: {list(pair)} is not a pair of rows in conditions {list(cfg.conditions)}"
            )
    if e.likelihood and cfg.qa_engine._target_ != HF_ENGINE:
        raise InputError(
            "evaluate.likelihood scores gold answers by teacher forcing, which only the transformers "
            f"engine does: add engine@qa_engine=hf (qa_engine is {cfg.qa_engine._target_})"
        )


def rows_for(cfg: DictConfig, run_model: str) -> list[Row]:
    check_conditions(cfg)
    rows = []
    for name in cfg.conditions:
        if name in BUILT_IN:
            rows.append(Row(name, BUILT_IN[name], None, run_model, "base"))
        else:
            source = instantiate(cfg.selfedit_sources[name], _recursive_=False)
            policy = source.policy_path(run_model)
            baseline = "base" if policy == run_model else f"{name}/no_update"
            rows.append(Row(name, source.label, source, policy, baseline))
    return rows


def measure(ctx: RunContext, started: float) -> dict:
    """Every row of `conditions` on the held-out articles, resumable; returns the summary (plots drawn,
    W&B fed); `stage=evaluate` writes it and prints `format_table`. One policy's engines at a time."""
    cfg = ctx.cfg
    d = cfg.domain
    articles = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    log.info("%d articles from %s", len(articles), d.data_path)
    rows = rows_for(cfg, ctx.model_path)
    by_policy: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_policy[row.policy].append(row)
    timings: dict[str, float] = defaultdict(float)
    edits: dict[str, dict[tuple[int, int], dict]] = {}
    updates: dict[str, dict] = {}
    results: list[dict] = []
    logprobs: dict[tuple[str, int], float] = {}
    for policy, policy_rows in by_policy.items():
        measured = evaluate_policy_rows(ctx, policy, policy_rows, articles, timings)
        edits |= measured.edits
        updates, results = measured.updates, measured.results
        logprobs |= measured.logprobs
    # updates and results are read back from the run's shared JSONL files: the last policy's call
    # returns every row's records.

    summary = summarise(cfg, rows, articles, edits, updates, results, logprobs, timings, started)
    summary["api_usage"] = ctx.log_api_usage()
    summary["plots"] = plots(summary, ctx.run_dir)
    ctx.tracker.log({f"acc/{c}": v["macro_accuracy"] for c, v in summary["conditions"].items()})
    accuracy = article_accuracies(results)
    for row in rows:
        if row.name not in edits:
            continue
        ctx.tracker.table(
            f"self_edits/{row.name}",
            [
                {
                    "article": article,
                    "sample": sample,
                    "title": r["title"],
                    "self_edit": r["text"],
                    "acc_after": accuracy.get((sample_condition(row.name, sample), article)),
                    "acc_no_update": accuracy.get((row.baseline, article)),
                }
                for (article, sample), r in edits[row.name].items()
            ],
        )
    ctx.tracker.summary(
        {k: v for k, v in summary.items() if k not in ("conditions", "comparisons")}
        | {f"{c}/macro_accuracy": v["macro_accuracy"] for c, v in summary["conditions"].items()}
    )
    return summary


@dataclass
class Measured:
    """What `evaluate_policy_rows` measured for one policy's rows."""

    edits: dict[str, dict[tuple[int, int], dict]]  # row -> (article, sample) -> self-edit record
    updates: dict[str, dict]  # every update on disk so far (the run's shared file)
    results: list[dict]  # every graded answer on disk so far
    logprobs: dict[tuple[str, int], float]  # (condition, article) -> mean answer log-prob, this call's


def sample_condition(row: str, sample: int) -> str:
    """The condition a row's graded answers carry for one self-edit sample: the row's name for sample
    0 (a one-sample run writes the records it always did), `<row>_s<k>` for the others."""
    return row if sample == 0 else f"{row}_s{sample}"


def row_samples(row: Row, edits: dict[str, dict[tuple[int, int], dict]]) -> list[int]:
    """The self-edit samples a row holds (a file source one, whatever `evaluate.samples` asks)."""
    if row.name not in edits:
        return [0]
    return sorted({sample for _, sample in edits[row.name]})


def evaluate_policy_rows(
    ctx: RunContext, policy: str, rows: list[Row], articles: list[Article], timings: dict[str, float]
) -> Measured:
    """Every row that updates `policy`: its self-edits (`evaluate.samples` per article from a
    sampling source), one inner update per self-edit, graded answers and, with
    `evaluate.likelihood`, the gold answers' log-likelihoods.

    A policy other than the run's model also gets a no-update row (`<row>/no_update`), its baseline."""
    cfg = ctx.cfg
    engines = ctx.engines_for(policy)
    try:
        t0 = time.perf_counter()
        edits = {}
        for row in rows:
            if row.source is not None:
                out = ctx.run_dir / "self_edits" / f"{row.name}.jsonl"
                out.parent.mkdir(parents=True, exist_ok=True)
                edits[row.name] = row.source.selfedits(
                    cfg, engines.sampler, ctx.formatter, articles, out, policy, cfg.evaluate.samples
                )
        timings["sampling_s"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        trained = [r for r in rows if r.name != "base"]
        jobs = [
            (
                sample_condition(r.name, s),
                a,
                InnerJob(
                    _update_key(r, a, s),
                    [f"{a.title}\n{a.context}"]
                    if r.name == "passage"
                    else edits[r.name][(a.index, s)]["sequences"],
                    derive_seed(cfg.seed, "inner", r.name, a.index, *([s] if s else [])),
                ),
            )
            for a in articles
            for r in trained
            for s in row_samples(r, edits)
        ]
        updates = train_adapters(
            cfg,
            policy,
            ctx.tokenizer,
            [job for _, _, job in jobs],
            ctx.run_dir / "updates.jsonl",
            ctx.run_dir / "adapters",
            ctx.tracker,
        )
        timings["inner_s"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        units = []
        if any(r.name == "base" for r in rows):
            units += [("base", a, None) for a in articles]
        if policy != ctx.model_path:
            units += [(r.baseline, a, None) for r in rows for a in articles]
        for condition, a, job in jobs:
            adapter = adapter_for(updates.get(job.key), ctx.run_dir.name)
            if adapter is not None:
                units.append((condition, a, adapter))
        results = answer_units(
            cfg, engines.qa, ctx.grader(), ctx.formatter, units, ctx.run_dir / "results.jsonl"
        )
        timings["eval_s"] += time.perf_counter() - t0
        logprobs = {}
        if cfg.evaluate.likelihood:
            t0 = time.perf_counter()
            logprobs = answer_logprobs(
                engines.qa,
                ctx.formatter,
                units,
                cfg.domain.topic_prefix,
                ctx.run_dir / "answer_logprobs.jsonl",
            )
            timings["likelihood_s"] += time.perf_counter() - t0
    finally:
        engines.close()
    return Measured(edits, updates, results, logprobs)


def _update_key(row: Row, article: Article, sample: int = 0) -> str:
    """One (row, article, sample) inner update's id: its record, adapter dir and answers carry it."""
    return f"{row.name}-{article.index:04d}" + (f"-s{sample}" if sample else "")


def per_article(values: dict[tuple[str, int], float], row: Row, samples: list[int]) -> dict[int, float]:
    """A row's value per article: the mean over its samples that were measured (a failed update
    leaves its sample out; an article with none is absent)."""
    return mean_over_samples(
        [{a: v for (c, a), v in values.items() if c == sample_condition(row.name, s)} for s in samples]
    )


def noise_floor(values: dict[tuple[str, int], float], row: Row, samples: list[int]) -> dict:
    """Sample 1 - sample 0 of one row, paired over articles: how far two draws of the same writer
    differ, the scale a difference between rows must clear."""
    first, second = (per_article(values, row, [s]) for s in samples[:2])
    return paired_difference(second, first).as_dict()


def summarise(cfg, rows, articles, edits, updates, results, logprobs, timings, started) -> dict:
    accuracy = article_accuracies(results)
    by_row: dict[str, dict[int, float]] = {}
    logprob_by_row: dict[str, dict[int, float]] = {}
    conditions = {}
    for row in rows:
        samples = row_samples(row, edits)
        values = by_row[row.name] = per_article(accuracy, row, samples)
        mean, se = mean_and_se(list(values.values()))
        _, low, high = bootstrap_mean_ci(list(values.values()))
        sample_conditions = [sample_condition(row.name, s) for s in samples]
        graded = [
            bool(r["correct"])
            for r in results
            if r["condition"] in sample_conditions and r["correct"] is not None
        ]
        conditions[row.name] = {
            "label": row.label,
            "macro_accuracy": mean,
            "se": se,
            "ci_low": low,
            "ci_high": high,
            "articles": len(values),
            "micro_accuracy": sum(graded) / len(graded) if graded else float("nan"),
            "samples": len(samples),
            "baseline": None,
            "gain": None,
            "policy": row.policy,
            "per_article": values,
        }
        c = conditions[row.name]
        if row.name != "base":
            c |= paired_gain(values, condition_accuracies(results, row.baseline))
            c["failed_updates"] = sum(
                not updates.get(_update_key(row, a, s), {}).get("adapter") for a in articles for s in samples
            )
        if len(samples) > 1:
            c["noise_floor"] = noise_floor(accuracy, row, samples)
        if cfg.evaluate.likelihood:
            scores = logprob_by_row[row.name] = per_article(logprobs, row, samples)
            baseline = {a: v for (cond, a), v in logprobs.items() if cond == row.baseline}
            m, lo, hi = bootstrap_mean_ci(list(scores.values()))
            c["answer_logprob"] = {"mean_logprob": m, "ci_low": lo, "ci_high": hi, "per_article": scores}
            if row.name != "base":
                c["answer_logprob"]["gain"] = paired_difference(scores, baseline).as_dict()
            if len(samples) > 1:
                c["answer_logprob"]["noise_floor"] = noise_floor(logprobs, row, samples)
    comparisons = {}
    for a, b in cfg.evaluate.compare:
        comparisons[f"{a} - {b}"] = {"accuracy": paired_difference(by_row[a], by_row[b]).as_dict()}
        if cfg.evaluate.likelihood:
            comparisons[f"{a} - {b}"]["answer_logprob"] = paired_difference(
                logprob_by_row[a], logprob_by_row[b]
            ).as_dict()
    trained = [u for u in updates.values() if u.get("adapter")]
    statuses = [e["status"] for row_edits in edits.values() for e in row_edits.values()]
    tokens = [e["num_tokens"] for row_edits in edits.values() for e in row_edits.values() if e["num_tokens"]]
    return {
        "experiment": cfg.experiment_name,
        "stage": "evaluate",
        "table": "table2",
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "articles": len(articles),
        "questions": sum(len(a.questions) for a in articles),
        "conditions": conditions,
        "comparisons": comparisons,
        "self_edits": {s: statuses.count(s) for s in sorted(set(statuses))},
        "mean_selfedit_tokens": sum(tokens) / max(1, len(tokens)),
        "inner_updates": len(trained),
        "inner_failures": sum(1 for u in updates.values() if u.get("failed")),
        "seconds_per_inner_update": sum(u["seconds"] for u in trained) / max(1, len(trained)),
        "ungraded_answers": sum(1 for r in results if r["correct"] is None),
        "timings": dict(timings) | {"total_s": time.perf_counter() - started},
        "lora_mode": cfg.lora.mode,
        "versions": versions(),
    }


def plots(summary: dict, run_dir: Path) -> dict[str, str]:
    """`table2.png`: each row's adapted accuracy (macro over articles) with its bootstrap 95% CI, drawn
    like stage=restem's Table 2."""
    rows = [{**c, "row": c["label"]} for c in summary["conditions"].values()]
    title = f"{summary['experiment']}: Table 2 ({summary['articles']} articles)"
    return {"table2": str(plot_table2(rows, run_dir / "table2.png", title))}


def format_table(summary: dict) -> str:
    """The paper's Table 2 layout: one row per condition, its no-update baseline and the adapted
    accuracy (macro over articles ± SE, over the mean of a row's self-edit samples); baseline and
    gain cover the articles whose update succeeded (`failed` counts the others). With
    `evaluate.likelihood`, each row's mean gold-answer log-prob; then the paired comparisons of
    `evaluate.compare`. The closing line names the plots once `run` has drawn them."""
    scored = any("answer_logprob" in c for c in summary["conditions"].values())
    width = max([36, *(len(c["label"]) for c in summary["conditions"].values())])
    lines = [
        f"\n{summary['experiment']}: {summary['articles']} articles, {summary['questions']} questions "
        f"(macro accuracy over articles ± SE; no update and gain paired on the updated articles)",
        f"{'condition':<{width}} {'no update':>9} {'adapted':>8} {'± SE':>6} {'gain':>7} {'failed':>6} {'n':>3}"
        + (f" {'log-prob [95% CI]':>26}" if scored else ""),
    ]
    for c in summary["conditions"].values():
        baseline = "" if c["baseline"] is None else f"{100 * c['baseline']:.1f}%"
        gain = "" if c["gain"] is None else f"{100 * c['gain']:+.1f}"
        line = (
            f"{c['label']:<{width}} {baseline:>9} {100 * c['macro_accuracy']:>7.1f}% {100 * c['se']:>6.1f} "
            f"{gain:>7} {c.get('failed_updates', ''):>6} {c['samples']:>3}"
        )
        if "answer_logprob" in c:
            lp = c["answer_logprob"]
            line += f" {lp['mean_logprob']:>8.3f} [{lp['ci_low']:.3f}, {lp['ci_high']:.3f}]"
        lines.append(line)
    if summary.get("comparisons"):
        lines.append(
            "paired differences a - b over articles [95% CI] (accuracy in points; log-prob in nats/token):"
        )
        for name, diff in summary["comparisons"].items():
            lines.append(difference_line(name, diff["accuracy"], 100, 1, " pts"))
            if "answer_logprob" in diff:
                lines.append(difference_line(f"{name} (log-prob)", diff["answer_logprob"], 1, 3, ""))
    floors = {n: c for n, c in summary["conditions"].items() if "noise_floor" in c}
    if floors:
        lines.append("noise floor, sample 1 - sample 0 of the same row [95% CI]:")
        for name, c in floors.items():
            lines.append(difference_line(name, c["noise_floor"], 100, 1, " pts"))
            if "noise_floor" in c.get("answer_logprob", {}):
                lines.append(
                    difference_line(f"{name} (log-prob)", c["answer_logprob"]["noise_floor"], 1, 3, "")
                )
    drawn = summary.get("plots")
    lines.append(
        f"n = self-edits per article; inner update: {summary['seconds_per_inner_update']:.1f} s each "
        f"({summary['lora_mode']}), total {summary['timings']['total_s']:.0f} s"
        + (f"; plots: {', '.join(drawn.values())}" if drawn else "")
    )
    return "\n".join(lines)
