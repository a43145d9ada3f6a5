"""Inner-loop benchmark: the paper's reference protocol vs the fast multi-adapter path, one process.

Both paths train the same self-edits (fixed: read from a run's self_edits.jsonl, or built from each
passage's sentences), same model, same epochs, rank, targets and learning rate, then both are scored
by the same evaluator. The fast path uses `loss_normalization=reference`, so its loss is scaled as
the reference's padded loss. `--reference-masks-pads` instead masks the reference's pads, appends no
EOS on either path and takes the mean over content tokens on both: the same update from the same
seeded adapter init, so only the engineering differs between the two paths.

  reference: PEFT wrapper per edit, bs 1, rows padded to --reference-max-length with pads in the loss,
             one adapter evaluated per generate call
  fast:      one resident base, K adapters per forward/backward, unpadded batches, all adapters
             evaluated in one generate call

`--paths fast,fast-cpu` instead compares the fast path with itself under the CPU speed settings of
`lora=cpu_demo` (`lora.attn_implementation=eager lora.autocast=bfloat16`): same jobs, same seeds, one
process.

Prints updates/minute for each path and the ratio (second over first), QA accuracy for each and the
paired difference (second − first) with a 95% confidence interval over articles, peak memory; writes
a JSON.

  python scripts/bench_inner_loop.py --articles 8 --epochs 10 --k 8 --reference-max-length 2048
  python scripts/bench_inner_loop.py --paths fast,fast-cpu --articles 20 --epochs 5 --lr 1e-2 --rank 16 \
      --targets all --batch-size 4 --reference-max-length 256 --reference-masks-pads --max-tokens-per-forward 2048
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import resource
import tempfile
import time
from pathlib import Path

import torch

from seal_runner.choices import AttnImplementation, Autocast, LoraMode, LossNormalization
from seal_runner.config import ALL_PROJECTIONS, LoraConfig
from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.evaluate import answer_questions, article_accuracies, mean_and_se
from seal_runner.domains.knowledge.selfedit import selfedit_to_sequences
from seal_runner.engines.base import LoraAdapter
from seal_runner.engines.hf_engine import HFEngine
from seal_runner.graders.lexical import LexicalGrader, LexicalRule
from seal_runner.lora.trainer import InnerJob, InnerResult
from seal_runner.lora.updater import InnerUpdater
from seal_runner.models import BUILTIN_SMOLLM2, load_tokenizer, pick_device, resolve_model_path
from seal_runner.prompts import PromptFormatter
from seal_runner.records import read_jsonl


def sentence_selfedit(context: str) -> str:
    """A fixed, model-free stand-in for an implications list: one passage sentence per line."""
    return "\n".join(s.strip() for s in re.split(r"(?<=[.!?])\s+", context) if s.strip())


def build_jobs(articles, selfedits: dict[int, str], max_sequences: int | None) -> list[InnerJob]:
    jobs = []
    for a in articles:
        sequences = selfedit_to_sequences(
            selfedits.get(a.index) or sentence_selfedit(a.context), a.title, a.context
        )
        if max_sequences:
            sequences = sequences[-max_sequences:]  # keep the appended passage
        jobs.append(InnerJob(f"a{a.index:04d}", sequences, seed=a.index))
    return jobs


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def peak_cuda_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def timed_updates(
    updater: InnerUpdater, jobs: list[InnerJob], adapter_root: Path, device: str
) -> tuple[list[tuple[InnerJob, InnerResult, Path | None]], float]:
    """Train `jobs` as a run does (each adapter saved under `adapter_root`); returns what
    `InnerUpdater.run` yields per job and the wall seconds, the GPU's queued work included.
    scripts/gpu_check.py times its measurements with it too."""
    start = time.perf_counter()
    done = list(updater.run(jobs, adapter_root))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return done, time.perf_counter() - start


def run_path(name, cfg, jobs, articles, args, path, tokenizer, engine, formatter) -> dict:
    device = pick_device(args.device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    updater = InnerUpdater(cfg, path, tokenizer, device=device, dtype=args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        done, train_s = timed_updates(updater, jobs, Path(tmp), device)
        adapters = {job.key: LoraAdapter(f"{name}-{job.key}", str(p)) for job, _, p in done if p}
        grader = LexicalGrader(args.rule)
        start = time.perf_counter()
        if cfg.mode == LoraMode.reference:  # the reference scores one adapted model at a time
            records = []
            for a, job in zip(articles, jobs, strict=True):
                records += answer_questions(engine, grader, formatter, [(name, a, adapters.get(job.key))], 64)
        else:
            units = [(name, a, adapters.get(job.key)) for a, job in zip(articles, jobs, strict=True)]
            records = answer_questions(engine, grader, formatter, units, 64)
        eval_s = time.perf_counter() - start
    del updater
    failures = sum(1 for _, r, _ in done if r.failed)
    return {
        "mode": cfg.mode,
        "updates": len(jobs),
        "train_seconds": train_s,
        "updates_per_minute": 60 * len(jobs) / train_s,
        "seconds_per_update": train_s / len(jobs),
        "eval_seconds": eval_s,
        "train_tokens": sum(r.train_tokens for _, r, _ in done),
        "mean_final_loss": sum(r.final_loss or math.nan for _, r, _ in done) / len(done),
        "failures": failures,
        "per_article": {str(k[1]): v for k, v in article_accuracies(records).items()},
        "peak_rss_gb_so_far": peak_rss_gb(),
        "peak_cuda_gb": peak_cuda_gb(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=BUILTIN_SMOLLM2)
    parser.add_argument("--data", default="builtin:demo")
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument(
        "--selfedits", help="self_edits.jsonl of a seal-run run dir (default: passage sentences)"
    )
    parser.add_argument("--max-sequences", type=int, default=None, help="cap sequences per self-edit")
    parser.add_argument("--k", type=int, default=8, help="adapters trained together on the fast path")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--targets", default="q_proj,v_proj", help="comma-separated, or all")
    parser.add_argument("--batch-size", type=int, default=1, help="the reference path needs 1")
    parser.add_argument("--max-tokens-per-forward", type=int, default=4096, help="memory, not numbers")
    parser.add_argument("--reference-max-length", type=int, default=2048)
    parser.add_argument(
        "--reference-masks-pads",
        action="store_true",
        help="mask the reference's pads and use mean-over-tokens loss on both paths: isolates the "
        "engineering (same update, less compute) from the padding defect",
    )
    parser.add_argument(
        "--paths",
        default="reference,fast",
        help="the two paths to compare, in order: two of reference, fast, fast-cpu",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--rule", default="contains", choices=LexicalRule.values())
    parser.add_argument("--out", default="outputs/bench_inner_loop.json")
    args = parser.parse_args()

    path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(path)
    formatter = PromptFormatter(tokenizer, chat=True)
    articles = load_articles(args.data, 0, args.articles)
    selfedits = {r["article"]: r["text"] for r in read_jsonl(Path(args.selfedits))} if args.selfedits else {}
    jobs = build_jobs(articles, selfedits, args.max_sequences)
    common = dict(
        rank=args.rank,
        alpha=2.0 * args.rank,
        target_modules=ALL_PROJECTIONS if args.targets == "all" else args.targets.split(","),
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_tokens_per_forward=args.max_tokens_per_forward,
        max_length=args.reference_max_length,
        loss_normalization=LossNormalization.tokens
        if args.reference_masks_pads
        else LossNormalization.reference,
    )
    reference = LoraConfig(
        mode=LoraMode.reference,
        append_eos=False,
        label_pads=not args.reference_masks_pads,
        adapters_per_batch=1,
        **common,
    )
    fast = LoraConfig(
        mode=LoraMode.fast, append_eos=not args.reference_masks_pads, adapters_per_batch=args.k, **common
    )
    configs = {
        "reference": reference,
        "fast": fast,
        "fast-cpu": dataclasses.replace(
            fast, attn_implementation=AttnImplementation.eager, autocast=Autocast.bfloat16
        ),
    }
    names = args.paths.split(",")
    if len(names) != 2 or not set(names) <= set(configs) or names[0] == names[1]:
        parser.error(f"--paths takes two different paths of {sorted(configs)}, got {args.paths!r}")
    engine = HFEngine(path, max_loras=args.k, max_lora_rank=args.rank, device=args.device, dtype=args.dtype)

    print(
        f"{len(jobs)} self-edits, {sum(len(j.sequences) for j in jobs)} sequences, {args.epochs} epochs, "
        f"r{args.rank} {args.targets} lr {args.lr:g}, device {pick_device(args.device)}"
    )
    base = answer_questions(
        engine, LexicalGrader(args.rule), formatter, [("base", a, None) for a in articles], 64
    )
    first, second = names
    results = {
        name: run_path(name, configs[name], jobs, articles, args, path, tokenizer, engine, formatter)
        for name in (second, first)  # the second path first, as before --paths existed
    }
    diffs = [results[second]["per_article"].get(k, 0.0) - v for k, v in results[first]["per_article"].items()]
    diff_mean, diff_se = mean_and_se(diffs)
    report = {
        "args": vars(args),
        "base_accuracy": mean_and_se(list(article_accuracies(base).values()))[0],
        **{
            name: r | {"accuracy": mean_and_se(list(r["per_article"].values()))[0]}
            for name, r in results.items()
        },
        "speedup_updates_per_minute": results[second]["updates_per_minute"]
        / results[first]["updates_per_minute"],
        "speedup_eval": results[first]["eval_seconds"] / results[second]["eval_seconds"],
        f"accuracy_diff_{second}_minus_{first}": diff_mean,
        "accuracy_diff_ci95": [diff_mean - 1.96 * diff_se, diff_mean + 1.96 * diff_se],
    }
    for name in names:
        r = report[name]
        print(
            f"{name:<10} {r['updates_per_minute']:8.2f} updates/min  {r['seconds_per_update']:7.2f} s/update  "
            f"eval {r['eval_seconds']:6.1f} s  accuracy {100 * r['accuracy']:5.1f}%  final loss {r['mean_final_loss']:.3f}"
        )
    print(f"base accuracy {100 * report['base_accuracy']:.1f}%")
    print(
        f"speed-up (updates/min): {report['speedup_updates_per_minute']:.1f}x   eval speed-up: {report['speedup_eval']:.1f}x"
    )
    lo, hi = report["accuracy_diff_ci95"]
    print(
        f"accuracy {second} - {first}: {100 * diff_mean:+.1f} pts (95% CI {100 * lo:+.1f} .. {100 * hi:+.1f})"
    )
    print(f"peak RSS {peak_rss_gb():.2f} GB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
