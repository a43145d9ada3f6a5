"""`stage=cpt`: continued pretraining on the pooled self-edits of many documents (the paper's
multi-passage setting).

Each row of `conditions` trains ONE model on a pool of texts from all articles and answers all their
questions without the passages; accuracy is micro-averaged over questions, as in the paper.
  base      no training
  passage   the passages themselves
  <source>  up to `cpt.samples_per_article` self-edits per article from a `selfedit_sources` entry,
            each one sequence (set domain.split_newlines=false, as the paper) plus a passage copy

How the one model trains is `cpt.mode` (fast, or the reference's padded update: outer.train_on_texts)
and `cpt.full_finetune` (LoRA, the reference's v1 regime, or every weight, its v2 regime).

Layout: self_edits/<row>.jsonl, cpt/<row>/model/ (merged checkpoint), results.jsonl, summary.json.
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig, OmegaConf

from seal_runner.config import CPTConfig
from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import macro_accuracy, micro_accuracy
from seal_runner.domains.knowledge.pipeline import answer_units
from seal_runner.domains.knowledge.table2 import check_conditions, rows_for
from seal_runner.outer import train_on_texts
from seal_runner.records import read_jsonl, write_json
from seal_runner.stages.common import setup_run, versions

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    check_conditions(cfg)
    ctx = setup_run(cfg)
    d = cfg.domain
    articles = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    cpt = CPTConfig(**OmegaConf.to_container(cfg.cpt, resolve=True))
    rows = rows_for(cfg, ctx.model_path)
    results_path = ctx.run_dir / "results.jsonl"
    training = {}
    for row in rows:
        if row.name == "base":
            texts = None
        elif row.name == "passage":
            texts = passage_texts(articles, cpt.passage_title_sequence)
        else:
            engines = ctx.engines_for(row.policy)
            try:
                out = ctx.run_dir / "self_edits" / f"{row.name}.jsonl"
                out.parent.mkdir(parents=True, exist_ok=True)
                edits = row.source.selfedits(
                    cfg, engines.sampler, ctx.formatter, articles, out, row.policy, cpt.samples_per_article
                )
                if row.policy != ctx.model_path:  # a trained policy's own no-update accuracy
                    units = [(row.baseline, a, None) for a in articles]
                    answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, results_path)
            finally:
                engines.close()
            texts = [seq for e in edits.values() for seq in e["sequences"]]
        model = row.policy
        if texts is not None:
            stats = train_on_texts(
                row.policy,
                texts,
                ctx.run_dir / "cpt" / row.name / "model",
                cpt,
                device=cfg.device,
                dtype=cfg.model.dtype,
            )
            training[row.name] = {k: stats[k] for k in ("texts", "steps", "final_loss", "seconds", "resumed")}
            model = str(ctx.run_dir / "cpt" / row.name / "model")
        engines = ctx.engines_for(model)
        try:
            units = [(row.name, a, None) for a in articles]
            answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, results_path)
        finally:
            engines.close()

    results = read_jsonl(results_path)
    conditions = {}
    for row in rows:
        baseline = micro_accuracy(results, row.baseline) if row.name != "base" else None
        accuracy = micro_accuracy(results, row.name)
        conditions[row.name] = {
            "label": row.label,
            "micro_accuracy": accuracy,
            "macro_accuracy": macro_accuracy(results, row.name)[0],
            "baseline": baseline,
            "gain": None if baseline is None else accuracy - baseline,
            "training": training.get(row.name),
        }
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "cpt",
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "articles": len(articles),
        "questions": sum(len(a.questions) for a in articles),
        "full_finetune": cpt.full_finetune,
        "mode": str(cpt.mode),
        "conditions": conditions,
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": conditions[rows[-1].name]["micro_accuracy"],
    }
    summary["api_usage"] = ctx.log_api_usage()
    write_json(ctx.run_dir / "summary.json", summary)
    ctx.tracker.log({f"cpt/{name}": c["micro_accuracy"] for name, c in conditions.items()})
    ctx.tracker.summary({f"{name}/micro_accuracy": c["micro_accuracy"] for name, c in conditions.items()})
    ctx.tracker.finish()
    print(format_table(summary))
    return summary


def passage_texts(articles: list[Article], title_sequence: bool) -> list[str]:
    """The passage row's pool: "{title}\n{passage}" per article, after a bare "{title}\n" with
    `cpt.passage_title_sequence` (the reference's passage-only run, an empty completion per article
    through its build_train_sequences with split_newlines off)."""
    return [
        text
        for a in articles
        for text in ([f"{a.title}\n"] if title_sequence else []) + [f"{a.title}\n{a.context}"]
    ]


def format_table(summary: dict) -> str:
    lines = [
        f"\n{summary['experiment']}: one model per row trained on {summary['articles']} articles' pooled texts; "
        f"{summary['questions']} questions (micro accuracy)",
        f"{'condition':<36} {'no update':>9} {'after CPT':>9} {'gain':>7}",
    ]
    for c in summary["conditions"].values():
        baseline = "" if c["baseline"] is None else f"{100 * c['baseline']:.1f}%"
        gain = "" if c["gain"] is None else f"{100 * c['gain']:+.1f}"
        lines.append(f"{c['label']:<36} {baseline:>9} {100 * c['micro_accuracy']:>8.1f}% {gain:>7}")
    lines.append(f"total {summary['total_s']:.0f} s")
    return "\n".join(lines)
