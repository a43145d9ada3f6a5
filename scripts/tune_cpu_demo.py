"""Measure which inner-LoRA settings let SmolLM2 learn a passage on CPU (used to set lora=cpu_demo).

Trains passage-only adapters for N demo articles under each setting (K at once through the
multi-adapter trainer) and reports no-context QA accuracy through the HF engine, plus seconds
per update. Example: python scripts/tune_cpu_demo.py --articles 8 --grid "1e-3:10,3e-3:10,1e-2:10"
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from seal_runner.config import LoraConfig
from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.evaluate import answer_questions, macro_accuracy
from seal_runner.engines.base import LoraAdapter
from seal_runner.engines.hf_engine import HFEngine
from seal_runner.graders.lexical import LexicalGrader
from seal_runner.lora.trainer import InnerJob
from seal_runner.lora.updater import InnerUpdater
from seal_runner.models import BUILTIN_SMOLLM2, load_tokenizer, resolve_model_path
from seal_runner.prompts import PromptFormatter

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--grid", default="1e-3:10,3e-3:10,1e-2:10", help="lr:epochs pairs")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", default="all", help="all or comma-separated module names")
    args = parser.parse_args()
    path = resolve_model_path(BUILTIN_SMOLLM2)
    tokenizer = load_tokenizer(path)
    formatter = PromptFormatter(tokenizer, chat=True)
    articles = load_articles("builtin:demo", 0, args.articles)
    engine, grader = (
        HFEngine(path, max_loras=args.articles, max_lora_rank=args.rank),
        LexicalGrader("contains"),
    )
    base = answer_questions(engine, grader, formatter, [("base", a, None) for a in articles], 64)
    print(f"base accuracy {100 * macro_accuracy(base, 'base')[0]:.1f}%")
    targets = ALL if args.targets == "all" else args.targets.split(",")
    for setting in args.grid.split(","):
        lr, epochs = float(setting.split(":")[0]), int(setting.split(":")[1])
        cfg = LoraConfig(
            rank=args.rank,
            alpha=2.0 * args.rank,
            target_modules=targets,
            lr=lr,
            epochs=epochs,
            batch_size=1,
            max_length=512,
            adapters_per_batch=len(articles),
        )
        updater = InnerUpdater(cfg, path, tokenizer)
        jobs = [InnerJob(f"p{a.index}", [f"{a.title}\n{a.context}"], seed=a.index) for a in articles]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            done = list(updater.run(jobs, Path(tmp)))
            seconds = (time.perf_counter() - start) / len(jobs)
            units = [
                ("passage", a, LoraAdapter(f"{setting}-{a.index}", str(p)))
                for a, (_, _, p) in zip(articles, done, strict=True)
            ]
            records = answer_questions(engine, grader, formatter, units, 64)
        final = sum(r.final_loss for _, r, _ in done) / len(done)
        print(
            f"lr {lr:g} epochs {epochs}: passage-only accuracy {100 * macro_accuracy(records, 'passage')[0]:.1f}% "
            f"| final loss {final:.3f} | {seconds:.1f} s/update"
        )


if __name__ == "__main__":
    main()
