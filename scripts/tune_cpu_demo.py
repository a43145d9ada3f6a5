"""Measure which inner-LoRA regime suits SEAL on CPU (how `lora=cpu_demo` and `lora=cpu_paper_shape`
were chosen).

For N articles and each lr:epochs setting, trains one adapter per (article, self-edit kind) through
the multi-adapter trainer and reports no-context QA accuracy (HF engine) and seconds per update.
Self-edit kinds, each turned into training sequences by the paper's rules (one example per line,
`{title}` prefix, passage appended last):
  passage    the passage alone (no self-edit)
  sentences  the passage's sentences, one per line: a self-edit that only restates, which a policy
             can learn to write; it measures how much restating the facts is worth in this regime
In the paper's regime the passage alone teaches little and self-edits add what it lacks; a regime
where `passage` already scores high leaves a self-edit nothing to add.
Each later grid setting is also compared with the first, per self-edit kind, paired over the same
articles (how fewer epochs were judged for the default job).
Example: python scripts/tune_cpu_demo.py --data generated:0 --articles 16 --grid 1e-3:10,3e-3:5
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from seal_runner.config import ALL_PROJECTIONS, LoraConfig
from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.evaluate import answer_questions, article_accuracies, macro_accuracy
from seal_runner.domains.knowledge.selfedit import selfedit_to_sequences
from seal_runner.engines.base import LoraAdapter
from seal_runner.engines.hf_engine import HFEngine
from seal_runner.graders.lexical import LexicalGrader
from seal_runner.lora.trainer import InnerJob
from seal_runner.lora.updater import InnerUpdater
from seal_runner.models import BUILTIN_SMOLLM2, load_tokenizer, resolve_model_path
from seal_runner.prompts import PromptFormatter
from seal_runner.stats import bootstrap_mean_ci, paired_difference

SELF_EDITS = {
    "passage": lambda article: "",
    "sentences": lambda article: "\n".join(re.split(r"(?<=[.!?])\s+", article.context.strip())),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default="builtin:demo", help="builtin:demo, generated:<seed> or a JSON file"
    )
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--grid", default="1e-3:10,3e-3:10,1e-2:10", help="lr:epochs pairs")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--targets", default="all", help="all or comma-separated module names")
    parser.add_argument("--edits", default="passage", help=f"comma-separated, of {sorted(SELF_EDITS)}")
    args = parser.parse_args()
    path = resolve_model_path(BUILTIN_SMOLLM2)
    tokenizer = load_tokenizer(path)
    formatter = PromptFormatter(tokenizer, chat=True)
    articles = load_articles(args.data, args.start, args.articles)
    kinds = args.edits.split(",")
    engine = HFEngine(path, max_loras=len(articles) * len(kinds), max_lora_rank=args.rank)
    grader = LexicalGrader("contains")
    base = answer_questions(engine, grader, formatter, [("base", a, None) for a in articles], 64)
    print(
        f"{args.data} [{args.start}, {args.start + args.articles}): base accuracy "
        f"{100 * macro_accuracy(base, 'base')[0]:.1f}%",
        flush=True,
    )
    targets = ALL_PROJECTIONS if args.targets == "all" else args.targets.split(",")
    first: dict[str, dict[int, float]] | None = None  # per kind, per article: the first setting's accuracy
    settings = args.grid.split(",")
    for setting in settings:
        lr, epochs = float(setting.split(":")[0]), int(setting.split(":")[1])
        cfg = LoraConfig(
            rank=args.rank,
            alpha=2.0 * args.rank,
            target_modules=list(targets),
            lr=lr,
            epochs=epochs,
            batch_size=args.batch_size,
            max_length=512,
            adapters_per_batch=8,
        )
        updater = InnerUpdater(cfg, path, tokenizer)
        jobs = [
            InnerJob(
                f"{kind}-{a.index}", selfedit_to_sequences(SELF_EDITS[kind](a), a.title, a.context), a.index
            )
            for kind in kinds
            for a in articles
        ]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            done = list(updater.run(jobs, Path(tmp)))
            seconds = (time.perf_counter() - start) / len(jobs)
            units = [
                (job.key.split("-")[0], a, LoraAdapter(f"{setting}-{job.key}", str(p)))
                for job, a, (_, _, p) in zip(jobs, articles * len(kinds), done, strict=True)
            ]
            records = answer_questions(engine, grader, formatter, units, 64)
        del updater
        accuracy = article_accuracies(records)
        per_article = {kind: {a: v for (c, a), v in accuracy.items() if c == kind} for kind in kinds}
        shown = []
        for kind in kinds:
            mean, low, high = bootstrap_mean_ci(list(per_article[kind].values()))
            shown.append(f"{kind} {100 * mean:.1f}% [{100 * low:.1f}, {100 * high:.1f}]")
        if len(kinds) > 1:
            d = paired_difference(per_article[kinds[1]], per_article[kinds[0]])
            shown.append(f"{kinds[1]} - {kinds[0]} {d.describe()}")
        if first is None:
            first = per_article
        else:
            shown += [
                f"{kind} vs {settings[0]} {paired_difference(per_article[kind], first[kind]).describe()}"
                for kind in kinds
            ]
        print(
            f"lr {lr:g} epochs {epochs} bs {args.batch_size}: "
            + " | ".join(shown)
            + f" | {seconds:.1f} s/update",
            flush=True,
        )


if __name__ == "__main__":
    main()
