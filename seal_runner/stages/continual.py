"""`stage=continual`: sequential self-edits and how much each erases (the paper's Figure 6).

Per sequence of `continual.length` passages: the untouched model answers every passage (row 0);
then for step t the current model writes one self-edit for passage t, is updated on it, answers
passages 1..t, and the adapter is merged into a new checkpoint that step t+1 starts from. The
sequences are drawn from the loaded articles in one of two ways (`sequence_plan`):
  continual.runs=null  one run; sequence s drawn with random.Random(continual.seed + s)
  continual.runs=N     the reference's protocol (knowledge-incorporation/scripts/continual_self_edits.sh
                       runs INDEX 0..7 with SEED=42+INDEX; src/continual/continual_self_edits.py draws
                       its sequences one after another from random.seed(SEED) over the whole dev file):
                       run r draws its `continual.sequences` from one random.Random(continual.seed + r),
                       and the matrices are aggregated over runs as its src/continual/average_results.py. `continual.strategy` (seal_runner/domains/knowledge/
strategies.py) chooses who writes and learns each self-edit and on what: the paper's `merge`,
`replay` of earlier self-edits, or `isolation` (adapters trained on the untouched model, summed).

Layout under the run dir, each step resumable (with `continual.runs`, every seq_<s> dir sits in
continual/run_<r>/):
  continual/seq_<s>/self_edits.jsonl   one self-edit per step
  continual/seq_<s>/updates.jsonl      one inner update per step
  continual/seq_<s>/results.jsonl      graded answers, condition = step<t>
  continual/seq_<s>/models/step_<t>/   the merged model after step t (only the latest is kept)
  continual/matrix.json                per-sequence matrices, their mean, and the forgetting stats
                                       (with runs also per-run means and stds and their spread)
  continual/heatmap.png                the mean matrix (also logged to W&B)
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from seal_runner.domains.knowledge.continual import (
    combine_runs,
    empty_matrix,
    forgetting_stats,
    mean_matrix,
    plot_heatmap,
    stats_across_runs,
    std_matrix,
)
from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import article_accuracies
from seal_runner.domains.knowledge.pipeline import (
    adapter_for,
    answer_units,
    sample_selfedits,
    train_adapters,
    unanswered,
)
from seal_runner.domains.knowledge.strategies import Merge, build_strategy
from seal_runner.errors import InputError
from seal_runner.inner import update_key
from seal_runner.lora.trainer import InnerJob
from seal_runner.outer import merge_adapter, read_done
from seal_runner.records import ResumableLog, append_jsonl, derive_seed, read_jsonl, write_json
from seal_runner.stages.common import RunContext, setup_run, versions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedSequence:
    """One sequence of passages, where its records live, and its ids: (s,) in a single run, (run, s)
    with `continual.runs`; the seeds of its self-edits and updates derive from them."""

    ids: tuple[int, ...]
    articles: list[Article]
    out: Path

    @property
    def tag(self) -> str:
        """Its name in adapter ids: seq<s>, or run<r>/seq<s>."""
        if len(self.ids) == 1:
            return f"seq{self.ids[0]}"
        run, s = self.ids
        return f"run{run}/seq{s}"


def sequences_of(pool: list[Article], count: int, length: int, seed: int) -> list[list[Article]]:
    """`count` sequences, sequence s drawn with its own random.Random(seed + s)."""
    _check_length(pool, length)
    return [random.Random(seed + s).sample(pool, length) for s in range(count)]


def run_sequences(pool: list[Article], count: int, length: int, seed: int) -> list[list[Article]]:
    """One reference run's sequences: `count` draws in a row from one random.Random(seed), as
    continual_self_edits.py's `random.seed(args.seed)` then `random.sample(full_data, n)` per
    sequence (passages may recur across sequences, never within one)."""
    _check_length(pool, length)
    rng = random.Random(seed)
    return [rng.sample(pool, length) for _ in range(count)]


def _check_length(pool: list[Article], length: int) -> None:
    if length > len(pool):
        raise InputError(f"continual.length={length} but only {len(pool)} articles are loaded")


def sequence_plan(c: DictConfig, pool: list[Article], out: Path) -> list[list[PlannedSequence]]:
    """The sequences grouped by run: one group when `continual.runs` is null (the layout and seeds
    runs made before the key existed), else `runs` groups, run r seeded `continual.seed + r`."""
    if c.runs is None:
        drawn = sequences_of(pool, c.sequences, c.length, c.seed)
        return [[PlannedSequence((s,), seq, out / f"seq_{s:02d}") for s, seq in enumerate(drawn)]]
    if c.runs < 1:
        raise InputError(
            f"continual.runs={c.runs} must be >= 1 (or null for one run, sequence s seeded seed + s)"
        )
    return [
        [
            PlannedSequence((r, s), seq, out / f"run_{r:02d}" / f"seq_{s:02d}")
            for s, seq in enumerate(run_sequences(pool, c.sequences, c.length, c.seed + r))
        ]
        for r in range(c.runs)
    ]


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    ctx = setup_run(cfg)
    d, c = cfg.domain, cfg.continual
    pool = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    out = ctx.run_dir / "continual"
    plan = sequence_plan(c, pool, out)
    strategy = build_strategy(c.strategy, c.replay_sequences, c.candidates, c.retention_lambda)
    by_run = []
    for group in plan:
        by_run.append([run_sequence(ctx, strategy, seq) for seq in group])
        log.info("run %d/%d done (%d sequences)", len(by_run), len(plan), len(group))
    matrices = [m for run_matrices in by_run for m in run_matrices]
    record = {"mean": mean_matrix(matrices)} if c.runs is None else aggregate_runs(by_run)
    record["per_sequence"] = matrices
    stats = record["stats"] = forgetting_stats(record["mean"])
    heatmap = plot_heatmap(
        record["mean"],
        out / "heatmap.png",
        f"{cfg.experiment_name} ({c.strategy}): mean over {len(matrices)} sequences",
    )
    write_json(out / "matrix.json", record)
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "continual",
        "strategy": c.strategy,
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "runs": c.runs,
        "sequences": len(matrices),
        "length": c.length,
        "matrix": record["mean"],
        "stats": stats,
        "cost": inner_cost([seq.out / "updates.jsonl" for group in plan for seq in group]),
        "heatmap": str(heatmap),
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": stats["final_mean_seen"],
    }
    if c.runs is not None:
        summary["stats_across_runs"] = record["stats_across_runs"]
    summary["api_usage"] = ctx.log_api_usage()
    write_json(ctx.run_dir / "summary.json", summary)
    ctx.tracker.image("continual/heatmap", str(heatmap))
    for t, value in enumerate(stats["mean_seen_by_step"], start=1):
        # A metric, not W&B's step: the step-less inner-loop logs have already moved the step on.
        ctx.tracker.log(
            {
                "continual/step": t,
                "continual/mean_seen": value,
                "continual/diagonal": record["mean"][t][t - 1],
            }
        )
    ctx.tracker.summary({f"continual/{k}": v for k, v in stats.items() if not isinstance(v, list)})
    ctx.tracker.finish()
    print(format_matrix(summary))
    return summary


def aggregate_runs(by_run: list[list[list[list[float]]]]) -> dict:
    """Per run its mean matrix, its sample std over its sequences (the reference's per-run summary)
    and its forgetting stats; over runs the reference's combination (`combine_runs`) and each
    stat's mean and spread."""
    means = [mean_matrix(m) for m in by_run]
    stds = [std_matrix(m) for m in by_run]
    per_run = [
        {"run": r, "mean": m, "std_over_sequences": sd, "stats": forgetting_stats(m)}
        for r, (m, sd) in enumerate(zip(means, stds, strict=True))
    ]
    return combine_runs(means, stds) | {
        "per_run": per_run,
        "stats_across_runs": stats_across_runs([p["stats"] for p in per_run]),
    }


def run_sequence(ctx: RunContext, strategy: Merge, planned: PlannedSequence) -> list[list[float]]:
    """One sequence's (length+1) x length matrix; every step's records land before the next starts."""
    cfg, sequence, out = ctx.cfg, planned.articles, planned.out
    models = out / "models"
    matrix = empty_matrix(len(sequence))
    results_path = out / "results.jsonl"
    # Resume from the latest merged step; its answers and all earlier ones are on disk.
    first = max((t for t in range(1, len(sequence) + 1) if read_done(models / f"step_{t}")), default=0)
    model = str(models / f"step_{first}") if first else ctx.model_path
    for t in range(first + 1 if first else 0, len(sequence) + 1):
        step_model = models / f"step_{t}"
        seen = sequence if t == 0 else sequence[:t]
        adapter = None
        if unanswered([(f"step{t}", a, None) for a in seen], read_jsonl(results_path)):
            engines = ctx.engines_for(model)
            try:
                if t > 0:
                    adapter = update_on(ctx, strategy, engines, model, planned, t)
                units = [(f"step{t}", a, adapter) for a in seen]
                answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, results_path)
            finally:
                engines.close()
        elif t > 0:  # answered before a kill, not merged yet: the adapter is on disk
            updates = ResumableLog(out / "updates.jsonl", key=update_key).done
            key = step_update_key(out, t)
            adapter = adapter_for(updates[key], f"{ctx.run_dir.name}/{planned.tag}") if key else None
        if t > 0:
            model = advance(cfg, model, adapter, step_model)
    accuracy = article_accuracies(read_jsonl(results_path))
    for t in range(len(sequence) + 1):
        for j, a in enumerate(sequence if t == 0 else sequence[:t]):
            matrix[t][j] = accuracy.get((f"step{t}", a.index), float("nan"))
    return matrix


def update_on(ctx: RunContext, strategy: Merge, engines, model: str, planned: PlannedSequence, t: int):
    """Step t's self-edit(s) and inner update(s), by the strategy's learner (the current model, or the
    untouched one for isolation), on the data the strategy chooses; the adapter to merge, or None."""
    cfg, sequence, out, ids = ctx.cfg, planned.articles, planned.out, planned.ids
    article = sequence[t - 1]
    learner = strategy.learner(ctx.model_path, model)
    writer = engines if learner == model else ctx.engines_for(learner)
    try:
        edits = sample_selfedits(
            cfg,
            writer.sampler,
            ctx.formatter,
            [article],
            strategy.candidates,
            out / "self_edits.jsonl",
            ("continual", *ids),
        )
    finally:
        if writer is not engines:
            writer.close()
    earlier = [edits[(a.index, 0)]["sequences"] for a in sequence[: t - 1]]
    jobs = [
        InnerJob(
            candidate_key(t, i, strategy.candidates),
            strategy.training_sequences(
                edits[(article.index, i)]["sequences"], earlier, derive_seed(cfg.seed, "replay", *ids, t)
            ),
            derive_seed(cfg.seed, "continual", *ids, t, *([i] if i else [])),
        )
        for i in range(strategy.candidates)
    ]
    updates = train_adapters(
        cfg, learner, ctx.tokenizer, jobs, out / "updates.jsonl", out / "adapters", ctx.tracker
    )
    namespace = f"{ctx.run_dir.name}/{planned.tag}"
    if strategy.candidates == 1:
        return adapter_for(updates[jobs[0].key], namespace)
    adapters = {job.key: adapter_for(updates[job.key], namespace) for job in jobs}
    return adapters.get(choose_candidate(ctx, strategy, engines, adapters, t, sequence, out))


def candidate_key(t: int, i: int, candidates: int) -> str:
    """`step<t>` for a one-candidate strategy (the paper's record names), `step<t>.c<i>` otherwise."""
    return f"step{t}" if candidates == 1 else f"step{t}.c{i}"


def choose_candidate(
    ctx: RunContext, strategy, engines, adapters: dict, t: int, sequence: list[Article], out: Path
) -> str | None:
    """Grade every trained candidate on the new passage and the earlier passages (the probe), score
    it with the strategy's reward and record the choice in choices.jsonl (once; a resume reads it).
    The probe's accuracy before the update is row t-1 of the matrix, already on disk."""
    made = recorded_choice(out, t)
    if made is not None:
        return made["chosen"]
    article, earlier = sequence[t - 1], sequence[: t - 1]
    trained = {key: adapter for key, adapter in adapters.items() if adapter is not None}
    units = [(key, a, adapter) for key, adapter in trained.items() for a in sequence[:t]]
    answer_units(ctx.cfg, engines.qa, ctx.grader(), ctx.formatter, units, out / "probe.jsonl")
    accuracy = article_accuracies(read_jsonl(out / "probe.jsonl"))
    before = article_accuracies(read_jsonl(out / "results.jsonl"))
    probe_before = _mean_or_none([before.get((f"step{t - 1}", a.index)) for a in earlier])
    scored = []
    for key in trained:
        new = accuracy.get((key, article.index))
        if new is None:  # every answer ungraded (a judge's failures): no reward to rank by
            log.warning("step %d: candidate %s has no graded answer on the new passage; skipped", t, key)
            continue
        probe_after = _mean_or_none([accuracy.get((key, a.index)) for a in earlier])
        reward = strategy.reward(new, probe_before, probe_after)
        scored.append({"key": key, "new": new, "probe_after": probe_after, "reward": reward})
    chosen = max(scored, key=lambda c: c["reward"])["key"] if scored else None  # first of ties
    append_jsonl(
        out / "choices.jsonl",
        [{"step": t, "chosen": chosen, "probe_before": probe_before, "candidates": scored}],
    )
    log.info("step %d: chose %s of %d candidates (%s)", t, chosen, len(adapters), scored)
    return chosen


def _mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def recorded_choice(out: Path, t: int) -> dict | None:
    """Step t's line of choices.jsonl, written once by `choose_candidate`; None before that."""
    return next((c for c in read_jsonl(out / "choices.jsonl") if c["step"] == t), None)


def step_update_key(out: Path, t: int) -> str | None:
    """The inner update merged at step t: the recorded choice of a multi-candidate strategy."""
    made = recorded_choice(out, t)
    return made["chosen"] if made is not None else f"step{t}"


def inner_cost(paths: list[Path]) -> dict[str, float | int]:
    """What the inner updates of a run cost, summed over its sequences (failed updates count 0)."""
    updates = [u for path in paths for u in read_jsonl(path)]
    return {
        "updates": len(updates),
        "inner_steps": sum(u.get("steps", 0) for u in updates),
        "train_sequences": sum(u.get("sequences", 0) for u in updates),
        "train_tokens": sum(u.get("train_tokens", 0) for u in updates),
        "inner_seconds": sum(u.get("seconds", 0.0) for u in updates),
    }


def advance(cfg: DictConfig, model: str, adapter, step_model: Path) -> str:
    """Merge step t's adapter into the current model; a failed update leaves the model as it was
    (its checkpoint is copied forward so the step still has its completion marker)."""
    if adapter is None:
        log.warning("%s: the update failed; the next step starts from the same model", step_model.name)
        shutil.copytree(model, step_model, dirs_exist_ok=True)
        write_json(step_model / "sft_done.json", {"model_path": model, "adapter": None})
    else:
        merge_adapter(model, Path(adapter.path), step_model, device=cfg.device, dtype=cfg.model.dtype)
    previous = Path(model)
    if previous.parent == step_model.parent and not cfg.continual.keep_models:
        shutil.rmtree(previous, ignore_errors=True)  # earlier steps' answers are on disk already
    return str(step_model)


def format_matrix(summary: dict) -> str:
    m, st = summary["matrix"], summary["stats"]
    head = "step " + "".join(f"{f'p{j + 1}':>7}" for j in range(len(m[0])))
    lines = [
        f"\n{summary['experiment']} [{summary['strategy']}]: accuracy after t sequential self-edits "
        f"(mean of {summary['sequences']} sequences)",
        head,
    ]
    for t, row in enumerate(m):
        lines.append(f"{t:<5}" + "".join(f"{'' if v != v else f'{v:.2f}':>7}" for v in row))
    if summary.get("stats_across_runs"):
        spread = summary["stats_across_runs"]["mean_seen_by_step"]
        lines.append(
            f"over {summary['runs']} runs, mean seen by step (mean ± std across runs): "
            + " ".join(f"{m:.3f}±{sd:.3f}" for m, sd in zip(spread["mean"], spread["std"], strict=True))
        )
    lines.append(
        f"mean over seen passages by step: {' '.join(f'{v:.3f}' for v in st['mean_seen_by_step'])}\n"
        f"passage 1: {st['first_passage_after_update']:.3f} after its update -> "
        f"{st['first_passage_after_last_step']:.3f} after {len(m) - 1} updates; "
        f"total {summary['total_s']:.0f} s, {summary['cost']['inner_steps']} inner steps"
    )
    return "\n".join(lines)
