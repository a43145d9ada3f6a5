"""`stage=continual`: sequential self-edits and how much each erases (the paper's Figure 6).

Per sequence of `continual.length` passages (drawn with seed `continual.seed + sequence`): the
untouched model answers every passage (row 0); then for step t the current model writes one
self-edit for passage t, is updated on it, answers passages 1..t, and the adapter is merged into a
new checkpoint that step t+1 starts from. `continual.strategy` (seal_runner/domains/knowledge/
strategies.py) chooses who writes and learns each self-edit and on what: the paper's `merge`,
`replay` of earlier self-edits, or `isolation` (adapters trained on the untouched model, summed).

Layout under the run dir, each step resumable:
  continual/seq_<s>/self_edits.jsonl   one self-edit per step
  continual/seq_<s>/updates.jsonl      one inner update per step
  continual/seq_<s>/results.jsonl      graded answers, condition = step<t>
  continual/seq_<s>/models/step_<t>/   the merged model after step t (only the latest is kept)
  continual/matrix.json                per-sequence matrices, their mean, and the forgetting stats
  continual/heatmap.png                the mean matrix (also logged to W&B)
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig

from seal_runner.domains.knowledge.continual import empty_matrix, forgetting_stats, mean_matrix, plot_heatmap
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
from seal_runner.lora.trainer import InnerJob
from seal_runner.outer import merge_adapter, read_done
from seal_runner.records import append_jsonl, derive_seed, read_jsonl, write_json
from seal_runner.stages.common import RunContext, setup_run, versions

log = logging.getLogger(__name__)


def sequences_of(pool: list[Article], count: int, length: int, seed: int) -> list[list[Article]]:
    if length > len(pool):
        raise ValueError(f"continual.length={length} but only {len(pool)} articles are loaded")
    return [random.Random(seed + s).sample(pool, length) for s in range(count)]


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    ctx = setup_run(cfg)
    d, c = cfg.domain, cfg.continual
    pool = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    sequences = sequences_of(pool, c.sequences, c.length, c.seed)
    strategy = build_strategy(c.strategy, c.replay_sequences, c.candidates, c.retention_lambda)
    out = ctx.run_dir / "continual"
    matrices = []
    for s, sequence in enumerate(sequences):
        matrices.append(run_sequence(ctx, strategy, s, sequence, out / f"seq_{s:02d}"))
        log.info("sequence %d/%d done", s + 1, len(sequences))
    mean = mean_matrix(matrices)
    stats = forgetting_stats(mean)
    heatmap = plot_heatmap(
        mean,
        out / "heatmap.png",
        f"{cfg.experiment_name} ({c.strategy}): mean over {len(matrices)} sequences",
    )
    write_json(out / "matrix.json", {"mean": mean, "per_sequence": matrices, "stats": stats})
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "continual",
        "strategy": c.strategy,
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "sequences": len(sequences),
        "length": c.length,
        "matrix": mean,
        "stats": stats,
        "cost": inner_cost([out / f"seq_{s:02d}" / "updates.jsonl" for s in range(len(sequences))]),
        "heatmap": str(heatmap),
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": stats["final_mean_seen"],
    }
    summary["api_usage"] = ctx.log_api_usage()
    write_json(ctx.run_dir / "summary.json", summary)
    ctx.tracker.image("continual/heatmap", str(heatmap))
    for t, value in enumerate(stats["mean_seen_by_step"], start=1):
        # A metric, not W&B's step: the step-less inner-loop logs have already moved the step on.
        ctx.tracker.log(
            {"continual/step": t, "continual/mean_seen": value, "continual/diagonal": mean[t][t - 1]}
        )
    ctx.tracker.summary({f"continual/{k}": v for k, v in stats.items() if not isinstance(v, list)})
    ctx.tracker.finish()
    print(format_matrix(summary))
    return summary


def run_sequence(
    ctx: RunContext, strategy: Merge, s: int, sequence: list[Article], out: Path
) -> list[list[float]]:
    """One sequence's (length+1) x length matrix; every step's records land before the next starts."""
    cfg = ctx.cfg
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
                    adapter = update_on(ctx, strategy, engines, model, s, t, sequence, out)
                units = [(f"step{t}", a, adapter) for a in seen]
                answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, results_path)
            finally:
                engines.close()
        elif t > 0:  # answered before a kill, not merged yet: the adapter is on disk
            updates = {u["key"]: u for u in read_jsonl(out / "updates.jsonl")}
            key = step_update_key(out, t)
            adapter = adapter_for(updates[key], f"{ctx.run_dir.name}/seq{s}") if key else None
        if t > 0:
            model = advance(cfg, model, adapter, step_model)
    accuracy = article_accuracies(read_jsonl(results_path))
    for t in range(len(sequence) + 1):
        for j, a in enumerate(sequence if t == 0 else sequence[:t]):
            matrix[t][j] = accuracy.get((f"step{t}", a.index), float("nan"))
    return matrix


def update_on(
    ctx: RunContext, strategy: Merge, engines, model: str, s: int, t: int, sequence: list[Article], out: Path
):
    """Step t's self-edit(s) and inner update(s), by the strategy's learner (the current model, or the
    untouched one for isolation), on the data the strategy chooses; the adapter to merge, or None."""
    cfg = ctx.cfg
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
            ("continual", s),
        )
    finally:
        if writer is not engines:
            writer.close()
    earlier = [edits[(a.index, 0)]["sequences"] for a in sequence[: t - 1]]
    jobs = [
        InnerJob(
            candidate_key(t, i, strategy.candidates),
            strategy.training_sequences(
                edits[(article.index, i)]["sequences"], earlier, derive_seed(cfg.seed, "replay", s, t)
            ),
            derive_seed(cfg.seed, "continual", s, t, *([i] if i else [])),
        )
        for i in range(strategy.candidates)
    ]
    updates = train_adapters(
        cfg, learner, ctx.tokenizer, jobs, out / "updates.jsonl", out / "adapters", ctx.tracker
    )
    namespace = f"{ctx.run_dir.name}/seq{s}"
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
    lines.append(
        f"mean over seen passages by step: {' '.join(f'{v:.3f}' for v in st['mean_seen_by_step'])}\n"
        f"passage 1: {st['first_passage_after_update']:.3f} after its update -> "
        f"{st['first_passage_after_last_step']:.3f} after {len(m) - 1} updates; "
        f"total {summary['total_s']:.0f} s, {summary['cost']['inner_steps']} inner steps"
    )
    return "\n".join(lines)
