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
from seal_runner.domains.knowledge.evaluate import answer_questions, macro_accuracy, micro_accuracy
from seal_runner.domains.knowledge.selfedit import selfedit_to_sequences
from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.inner import InnerUpdater
from seal_runner.lora.trainer import InnerJob
from seal_runner.prompts import selfedit_prompt
from seal_runner.records import append_jsonl, derive_seed, read_jsonl, write_json
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
    engine = ctx.engine()
    timings: dict[str, float] = {}

    # 1. Self-edits: one per article, seeded per article so a rerun samples the same text.
    t0 = time.perf_counter()
    edits_path = ctx.run_dir / "self_edits.jsonl"
    edits = {r["article"]: r for r in read_jsonl(edits_path)}
    todo = [a for a in articles if a.index not in edits] if "selfedit" in cfg.conditions else []
    if todo:
        prompts = [
            ctx.formatter(
                selfedit_prompt(
                    cfg.selfedit_prompt.template,
                    cfg.selfedit_prompt.instruction,
                    cfg.selfedit_prompt.header,
                    a.title,
                    a.context,
                )
            )
            for a in todo
        ]
        sampling = Sampling(cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.max_tokens)
        seeds = [derive_seed(cfg.seed, "selfedit", a.index, 0) for a in todo]
        completions = engine.generate(prompts, sampling, seeds=seeds)
        new = []
        for a, prompt, c in zip(todo, prompts, completions, strict=True):
            sequences = selfedit_to_sequences(
                c.text,
                a.title,
                a.context,
                separator=d.split_separator,
                split_newlines=d.split_newlines,
                drop_preamble=d.drop_preamble,
                title_prefix=d.title_prefix,
                append_passage=d.append_passage,
            )
            status = "empty" if not c.text.strip() else ("truncated" if c.finish_reason == "length" else "ok")
            new.append(
                {
                    "article": a.index,
                    "title": a.title,
                    "prompt": prompt,
                    "text": c.text.strip(),
                    "num_tokens": c.num_tokens,
                    "status": status,
                    "sequences": sequences,
                }
            )
        append_jsonl(edits_path, new)
        edits.update({r["article"]: r for r in new})
    timings["sampling_s"] = time.perf_counter() - t0

    # 2. Inner updates for every (condition, article) that trains.
    t0 = time.perf_counter()
    updates_path = ctx.run_dir / "updates.jsonl"
    updates = {r["key"]: r for r in read_jsonl(updates_path)}
    jobs = []
    for a in articles:
        for condition in (c for c in cfg.conditions if c != "base"):
            key = f"{condition}-{a.index:04d}"
            if key in updates:
                continue
            sequences = [f"{a.title}\n{a.context}"] if condition == "passage" else edits[a.index]["sequences"]
            if not sequences:
                append_jsonl(
                    updates_path, [{"key": key, "failed": "self-edit produced no training sequences"}]
                )
                continue
            jobs.append(InnerJob(key, sequences, derive_seed(cfg.seed, "inner", condition, a.index)))
    if jobs:
        updater = InnerUpdater(cfg.lora, ctx.model_path, ctx.tokenizer, cfg.device, cfg.model.dtype)
        for job, result, path in updater.run(jobs, ctx.run_dir / "adapters"):
            record = {
                "key": job.key,
                "sequences": len(job.sequences),
                "steps": result.steps,
                "train_tokens": result.train_tokens,
                "seconds": result.seconds,
                "first_loss": result.losses[0] if result.losses else None,
                "final_loss": result.final_loss,
                "failed": result.failed,
                "adapter": str(path) if path else None,
            }
            append_jsonl(updates_path, [record])
            updates[job.key] = record
            ctx.tracker.log(
                {"inner/final_loss": result.final_loss or float("nan"), "inner/seconds": result.seconds}
            )
        del updater
    timings["inner_s"] = time.perf_counter() - t0

    # 3. QA for every (condition, article) not yet graded; the base model's answers are computed once.
    t0 = time.perf_counter()
    results_path = ctx.run_dir / "results.jsonl"
    results = read_jsonl(results_path)
    graded = {(r["condition"], r["article"]) for r in results}
    units = []
    for a in articles:
        for condition in cfg.conditions:
            if (condition, a.index) in graded:
                continue
            if condition == "base":
                units.append((condition, a, None))
                continue
            update = updates.get(f"{condition}-{a.index:04d}", {})
            if update.get("adapter"):
                units.append(
                    (condition, a, LoraAdapter(f"{ctx.run_dir.name}/{update['key']}", update["adapter"]))
                )
    if units:
        new = answer_questions(engine, ctx.grader(), ctx.formatter, units, d.qa_max_tokens, d.topic_prefix)
        append_jsonl(results_path, new)
        results += new
    timings["eval_s"] = time.perf_counter() - t0
    engine.close()

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
