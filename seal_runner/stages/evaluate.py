"""`stage=evaluate`: the paper's Table 2 on one set of held-out articles.

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

from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import (
    condition_accuracies,
    macro_accuracy,
    micro_accuracy,
    paired_gain,
)
from seal_runner.domains.knowledge.pipeline import adapter_for, answer_units, train_adapters
from seal_runner.domains.knowledge.report import plot_table2
from seal_runner.errors import InputError
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import derive_seed, write_json
from seal_runner.stages.common import RunContext, setup_run, versions
from seal_runner.stats import bootstrap_mean_ci

log = logging.getLogger(__name__)

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
    `selfedit_sources` (rows are open-ended: a preset can add sources, so this is no Enum)."""
    allowed = [*BUILT_IN, *cfg.selfedit_sources]
    unknown = [name for name in cfg.conditions if name not in allowed]
    if unknown:
        raise InputError(
            f"conditions: {unknown} unknown; a row is built in ({', '.join(BUILT_IN)}) or a key of "
            f"selfedit_sources ({', '.join(cfg.selfedit_sources)})"
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


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    check_conditions(cfg)
    ctx = setup_run(cfg)
    d = cfg.domain
    articles = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    log.info("%d articles from %s", len(articles), d.data_path)
    rows = rows_for(cfg, ctx.model_path)
    by_policy: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_policy[row.policy].append(row)
    timings: dict[str, float] = defaultdict(float)
    edits: dict[str, dict[int, dict]] = {}
    updates: dict[str, dict] = {}
    results: list[dict] = []
    for policy, policy_rows in by_policy.items():
        policy_edits, updates, results = evaluate_policy_rows(ctx, policy, policy_rows, articles, timings)
        edits |= policy_edits
    # updates and results are read back from the run's shared JSONL files: the last policy's call
    # returns every row's records.

    summary = summarise(cfg, rows, articles, edits, updates, results, timings, started)
    summary["api_usage"] = ctx.log_api_usage()
    summary["plots"] = plots(summary, ctx.run_dir)
    write_json(ctx.run_dir / "summary.json", summary)
    ctx.tracker.log({f"acc/{c}": v["macro_accuracy"] for c, v in summary["conditions"].items()})
    for name, path in summary["plots"].items():
        ctx.tracker.image(f"plots/{name}", path)
    for row in rows:
        if row.name not in edits:
            continue
        ctx.tracker.table(
            f"self_edits/{row.name}",
            [
                {
                    "article": r["article"],
                    "title": r["title"],
                    "self_edit": r["text"],
                    "acc_after": _article_acc(results, row.name, r["article"]),
                    "acc_no_update": _article_acc(results, row.baseline, r["article"]),
                }
                for r in edits[row.name].values()
            ],
        )
    ctx.tracker.summary(
        {k: v for k, v in summary.items() if k != "conditions"}
        | {f"{c}/macro_accuracy": v["macro_accuracy"] for c, v in summary["conditions"].items()}
    )
    ctx.tracker.finish()
    print(format_table(summary))
    return summary


def evaluate_policy_rows(
    ctx: RunContext, policy: str, rows: list[Row], articles: list[Article], timings: dict[str, float]
) -> tuple[dict[str, dict[int, dict]], dict[str, dict], list[dict]]:
    """Every row that updates `policy`: its self-edits, inner updates and graded answers.

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
                sampled = row.source.selfedits(cfg, engines.sampler, ctx.formatter, articles, out, policy)
                edits[row.name] = {article: r for (article, sample), r in sampled.items() if sample == 0}
        timings["sampling_s"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        trained = [r for r in rows if r.name != "base"]
        jobs = [
            InnerJob(
                _update_key(r, a),
                [f"{a.title}\n{a.context}"] if r.name == "passage" else edits[r.name][a.index]["sequences"],
                derive_seed(cfg.seed, "inner", r.name, a.index),
            )
            for a in articles
            for r in trained
        ]
        updates = train_adapters(
            cfg,
            policy,
            ctx.tokenizer,
            jobs,
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
        for r in trained:
            for a in articles:
                adapter = adapter_for(updates.get(_update_key(r, a)), ctx.run_dir.name)
                if adapter is not None:
                    units.append((r.name, a, adapter))
        results = answer_units(
            cfg, engines.qa, ctx.grader(), ctx.formatter, units, ctx.run_dir / "results.jsonl"
        )
        timings["eval_s"] += time.perf_counter() - t0
    finally:
        engines.close()
    return edits, updates, results


def _update_key(row: Row, article: Article) -> str:
    """One (row, article) inner update's id: its record, adapter dir and graded answers carry it."""
    return f"{row.name}-{article.index:04d}"


def _article_acc(results: list[dict], condition: str, article: int) -> float | None:
    hits = [
        r["correct"]
        for r in results
        if r["condition"] == condition and r["article"] == article and r["correct"] is not None
    ]
    return sum(hits) / len(hits) if hits else None


def summarise(cfg, rows, articles, edits, updates, results, timings, started) -> dict:
    conditions = {}
    for row in rows:
        mean, se, n = macro_accuracy(results, row.name)
        _, low, high = bootstrap_mean_ci(list(condition_accuracies(results, row.name).values()))
        conditions[row.name] = {
            "label": row.label,
            "macro_accuracy": mean,
            "se": se,
            "ci_low": low,
            "ci_high": high,
            "articles": n,
            "micro_accuracy": micro_accuracy(results, row.name),
            "baseline": None,
            "gain": None,
            "policy": row.policy,
        }
        if row.name != "base":
            conditions[row.name] |= paired_gain(
                condition_accuracies(results, row.name), condition_accuracies(results, row.baseline)
            )
            conditions[row.name]["failed_updates"] = sum(
                not updates.get(_update_key(row, a), {}).get("adapter") for a in articles
            )
    trained = [u for u in updates.values() if u.get("adapter")]
    statuses = [e["status"] for row_edits in edits.values() for e in row_edits.values()]
    tokens = [e["num_tokens"] for row_edits in edits.values() for e in row_edits.values() if e["num_tokens"]]
    return {
        "experiment": cfg.experiment_name,
        "stage": "evaluate",
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "articles": len(articles),
        "questions": sum(len(a.questions) for a in articles),
        "conditions": conditions,
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
    accuracy (macro over articles ± SE); baseline and gain cover the articles whose update succeeded
    (`failed` counts the others). The closing line names the plots once `run` has drawn them."""
    lines = [
        f"\n{summary['experiment']}: {summary['articles']} articles, {summary['questions']} questions "
        f"(macro accuracy over articles ± SE; no update and gain paired on the updated articles)",
        f"{'condition':<36} {'no update':>9} {'adapted':>8} {'± SE':>6} {'gain':>7} {'failed':>6}",
    ]
    for c in summary["conditions"].values():
        baseline = "" if c["baseline"] is None else f"{100 * c['baseline']:.1f}%"
        gain = "" if c["gain"] is None else f"{100 * c['gain']:+.1f}"
        lines.append(
            f"{c['label']:<36} {baseline:>9} {100 * c['macro_accuracy']:>7.1f}% {100 * c['se']:>6.1f} "
            f"{gain:>7} {c.get('failed_updates', ''):>6}"
        )
    drawn = summary.get("plots")
    lines.append(
        f"inner update: {summary['seconds_per_inner_update']:.1f} s each ({summary['lora_mode']}), "
        f"total {summary['timings']['total_s']:.0f} s"
        + (f"; plots: {', '.join(drawn.values())}" if drawn else "")
    )
    return "\n".join(lines)
