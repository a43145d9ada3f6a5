"""`stage=evaluate`: per context, base accuracy vs accuracy after a LoRA update on the passage alone
and on passage + one sampled self-edit (the paper's Table 2 rows that need no API).

Steps, each resumable from the run dir:
  self_edits.jsonl   one sampled self-edit per article (prompt, text, tokens, parse status)
  updates.jsonl      one inner update per (condition, article): steps, losses, seconds, failure
  results.jsonl      one graded answer per (condition, article, question)
  summary.json       macro accuracy ± SE per condition, gains, timings, versions
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig

from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.evaluate import macro_accuracy, micro_accuracy
from seal_runner.domains.knowledge.pipeline import adapter_for, answer_units, sample_selfedits, train_adapters
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import derive_seed, write_json
from seal_runner.stages.common import setup_run, versions

log = logging.getLogger(__name__)

CONDITIONS = ("base", "passage", "selfedit")
LABELS = {"base": "base model (no update)", "passage": "train on passage", "selfedit": "passage + self-edit"}


def run(cfg: DictConfig) -> dict:
    unknown = set(cfg.conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(
            f"conditions={list(cfg.conditions)}: unknown {sorted(unknown)}; choose from {CONDITIONS}"
        )
    started = time.perf_counter()
    ctx = setup_run(cfg)
    d = cfg.domain
    articles = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    log.info("%d articles from %s", len(articles), d.data_path)
    engines = ctx.engines_for(ctx.model_path)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    samples = 1 if "selfedit" in cfg.conditions else 0
    edits = sample_selfedits(
        cfg, engines.sampler, ctx.formatter, articles, samples, ctx.run_dir / "self_edits.jsonl", "eval"
    )
    edits = {article: r for (article, _), r in edits.items()}
    timings["sampling_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    trained = [c for c in cfg.conditions if c != "base"]
    jobs = [
        InnerJob(
            f"{c}-{a.index:04d}",
            [f"{a.title}\n{a.context}"] if c == "passage" else edits[a.index]["sequences"],
            derive_seed(cfg.seed, "inner", c, a.index),
        )
        for a in articles
        for c in trained
    ]
    updates = train_adapters(
        cfg,
        ctx.model_path,
        ctx.tokenizer,
        jobs,
        ctx.run_dir / "updates.jsonl",
        ctx.run_dir / "adapters",
        ctx.tracker,
    )
    timings["inner_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    units = [("base", a, None) for a in articles] if "base" in cfg.conditions else []
    for c in trained:
        for a in articles:
            adapter = adapter_for(updates.get(f"{c}-{a.index:04d}"), ctx.run_dir.name)
            if adapter is not None:
                units.append((c, a, adapter))
    results = answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, ctx.run_dir / "results.jsonl")
    timings["eval_s"] = time.perf_counter() - t0
    engines.close()

    summary = summarise(cfg, articles, edits, updates, results, timings, started)
    write_json(ctx.run_dir / "summary.json", summary)
    ctx.tracker.log({f"acc/{c}": summary["conditions"][c]["macro_accuracy"] for c in summary["conditions"]})
    ctx.tracker.table(
        "self_edits",
        [
            {
                "article": r["article"],
                "title": r["title"],
                "self_edit": r["text"],
                "acc_after": _article_acc(results, "selfedit", r["article"]),
                "acc_base": _article_acc(results, "base", r["article"]),
            }
            for r in edits.values()
        ],
    )
    ctx.tracker.summary(
        {k: v for k, v in summary.items() if k != "conditions"}
        | {f"{c}/macro_accuracy": v["macro_accuracy"] for c, v in summary["conditions"].items()}
    )
    ctx.tracker.finish()
    print(format_table(summary))
    return summary


def _article_acc(results: list[dict], condition: str, article: int) -> float | None:
    hits = [
        r["correct"]
        for r in results
        if r["condition"] == condition and r["article"] == article and r["correct"] is not None
    ]
    return sum(hits) / len(hits) if hits else None


def summarise(cfg, articles, edits, updates, results, timings, started) -> dict:
    conditions = {}
    for c in cfg.conditions:
        mean, se, n = macro_accuracy(results, c)
        conditions[c] = {
            "label": LABELS[c],
            "macro_accuracy": mean,
            "se": se,
            "articles": n,
            "micro_accuracy": micro_accuracy(results, c),
        }
    trained = [u for u in updates.values() if u.get("adapter")]
    statuses = [e["status"] for e in edits.values()]
    return {
        "experiment": cfg.experiment_name,
        "stage": "evaluate",
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "articles": len(articles),
        "questions": sum(len(a.questions) for a in articles),
        "conditions": conditions,
        "gain_selfedit_vs_base": _gain(conditions, "selfedit", "base"),
        "gain_passage_vs_base": _gain(conditions, "passage", "base"),
        "self_edits": {s: statuses.count(s) for s in sorted(set(statuses))},
        "mean_selfedit_tokens": sum(e["num_tokens"] for e in edits.values()) / max(1, len(edits)),
        "inner_updates": len(trained),
        "inner_failures": sum(1 for u in updates.values() if u.get("failed")),
        "seconds_per_inner_update": sum(u["seconds"] for u in trained) / max(1, len(trained)),
        "ungraded_answers": sum(1 for r in results if r["correct"] is None),
        "timings": timings | {"total_s": time.perf_counter() - started},
        "lora_mode": cfg.lora.mode,
        "versions": versions(),
    }


def _gain(conditions: dict, a: str, b: str) -> float | None:
    if a in conditions and b in conditions:
        return conditions[a]["macro_accuracy"] - conditions[b]["macro_accuracy"]
    return None


def format_table(summary: dict) -> str:
    lines = [
        f"\n{summary['experiment']}: {summary['articles']} articles, {summary['questions']} questions "
        f"(macro accuracy over articles ± SE)",
        f"{'condition':<28} {'accuracy':>9} {'± SE':>7}",
    ]
    for c in summary["conditions"].values():
        lines.append(f"{c['label']:<28} {100 * c['macro_accuracy']:>8.1f}% {100 * c['se']:>6.1f}")
    lines.append(
        f"inner update: {summary['seconds_per_inner_update']:.1f} s each ({summary['lora_mode']}), "
        f"total {summary['timings']['total_s']:.0f} s"
    )
    return "\n".join(lines)
