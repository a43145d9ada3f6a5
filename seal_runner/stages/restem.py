"""`stage=restem`: SEAL's outer loop (ReSTEM = rejection sampling + SFT) for knowledge incorporation.

Round r, with policy_r (round 0 = the starting model):
  1. held-out evaluation of policy_r: base accuracy and accuracy after its own self-edit;
  2. sample `samples_per_context` self-edits per training context with policy_r;
  3. reward each with `inner_seeds` independent inner updates on policy_r (mean adapted accuracy);
  4. select per context (`restem.selection`), SFT policy_r on (self-edit prompt -> chosen self-edit),
     merge -> policy_{r+1}.
After the last round the final policy is evaluated too. Everything lives under round_<r>/ and
eval/round_<r>/ in the run dir and is skipped on a rerun once on disk.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_runner.choices import Reward
from seal_runner.config import SFTConfig
from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import article_accuracies, mean_and_se
from seal_runner.domains.knowledge.pipeline import adapter_for, answer_units, sample_selfedits, train_adapters
from seal_runner.domains.knowledge.report import comparisons, plot_round_curve, plot_table2, table2_rows
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import derive_seed, write_json
from seal_runner.selection import reward_stats, select
from seal_runner.stages.common import Engines, RunContext, setup_run, versions
from seal_runner.stats import bootstrap_mean_ci, paired_difference

log = logging.getLogger(__name__)


def training_contexts(cfg: DictConfig, heldout: list[Article]) -> list[Article]:
    d, r = cfg.domain, cfg.restem
    path = r.train_data_path or d.data_path
    start = r.train_start + (d.start + len(heldout) if path == d.data_path else 0)
    pool = load_articles(path, start, r.contexts_per_round * r.rounds, d.shuffle_seed)
    if len(pool) < r.contexts_per_round * r.rounds:
        log.warning("only %d training contexts for %d rounds x %d", len(pool), r.rounds, r.contexts_per_round)
    return pool


def evaluate_policy(
    ctx: RunContext, engines: Engines, policy_path: str, heldout: list[Article], out: Path
) -> dict:
    """Held-out accuracy of a policy: no update (`base`), after an update on each of its
    `restem.heldout_samples` own self-edits (`selfedit`, per article the mean over the samples), and
    with `restem.heldout_passage` after an update on the passage alone (`passage`). Each condition
    carries its per-article accuracies, so rounds and rows can be compared paired; with two or more
    samples, sample 0 vs sample 1 of this same policy is the noise floor of a difference."""
    cfg, r = ctx.cfg, ctx.cfg.restem
    edits = sample_selfedits(
        cfg,
        engines.sampler,
        ctx.formatter,
        heldout,
        r.heldout_samples,
        out / "self_edits.jsonl",
        ("eval", out.name),
    )
    jobs = [
        (
            f"selfedit{_sample_suffix(s)}",
            a,
            InnerJob(
                f"selfedit-{a.index:04d}{_sample_suffix(s)}",
                edits[(a.index, s)]["sequences"],
                derive_seed(cfg.seed, "eval-inner", a.index, *([s] if s else [])),
            ),
        )
        for a in heldout
        for s in range(r.heldout_samples)
    ]
    if r.heldout_passage:
        jobs += [
            (
                "passage",
                a,
                InnerJob(
                    f"passage-{a.index:04d}",
                    [f"{a.title}\n{a.context}"],
                    derive_seed(cfg.seed, "eval-inner", a.index),
                ),
            )
            for a in heldout
        ]
    updates = train_adapters(
        cfg,
        policy_path,
        ctx.tokenizer,
        [j for _, _, j in jobs],
        out / "updates.jsonl",
        out / "adapters",
        ctx.tracker,
    )
    units = [("base", a, None) for a in heldout] + [
        (condition, a, adapter)
        for condition, a, job in jobs
        if (adapter := adapter_for(updates.get(job.key), f"{out.parent.name}/{out.name}"))
    ]
    results = answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, out / "results.jsonl")
    accuracy = article_accuracies(results)
    per_article = {"base": _accuracies(accuracy, "base")}
    samples = [_accuracies(accuracy, f"selfedit{_sample_suffix(s)}") for s in range(r.heldout_samples)]
    per_article["selfedit"] = _mean_over_samples(samples)
    if r.heldout_passage:
        per_article["passage"] = _accuracies(accuracy, "passage")
    summary = {condition: _accuracy_summary(values) for condition, values in per_article.items()}
    summary["selfedit"]["samples"] = r.heldout_samples
    summary["failed_updates"] = sum(bool(u.get("failed")) for u in updates.values())
    summary["per_article"] = per_article
    if len(samples) > 1:
        summary["noise_floor"] = paired_difference(samples[1], samples[0]).as_dict()
    summary["mean_selfedit_tokens"] = sum(e["num_tokens"] for e in edits.values()) / max(1, len(edits))
    summary["selfedits"] = selfedit_counts(edits.values())
    write_json(out / "summary.json", summary)
    return summary


def _sample_suffix(sample: int) -> str:
    """Sample 0 keeps the names runs wrote before several held-out samples existed (resume)."""
    return f"-s{sample}" if sample else ""


def _accuracies(accuracy: dict[tuple[str, int], float], condition: str) -> dict[int, float]:
    return {article: acc for (c, article), acc in accuracy.items() if c == condition}


def _mean_over_samples(samples: list[dict[int, float]]) -> dict[int, float]:
    """Per article, the mean over the samples whose update succeeded."""
    articles = sorted({a for sample in samples for a in sample})
    return {
        a: sum(values) / len(values)
        for a in articles
        if (values := [sample[a] for sample in samples if a in sample])
    }


def _accuracy_summary(per_article: dict[int, float]) -> dict:
    """Macro accuracy with its SE and bootstrap 95% CI over articles."""
    values = list(per_article.values())
    mean, se = mean_and_se(values)
    _, low, high = bootstrap_mean_ci(values)
    return {"macro_accuracy": mean, "se": se, "ci_low": low, "ci_high": high, "articles": len(values)}


def rewards_for_round(
    ctx: RunContext, engines: Engines, policy_path: str, contexts: list[Article], out: Path
) -> tuple[list[dict], float, dict]:
    """One candidate per non-empty (context, sample) scored by `restem.reward`, the seconds the
    scoring took (sampling excluded: the cost the proxy reward exists to cut) and the self-edits'
    status counts. The seconds are summed over
    every attempt at the round (reward_seconds.json), so a resumed run reports what the scoring
    cost in total, not the moments its rerun spent reading finished records."""
    cfg, r = ctx.cfg, ctx.cfg.restem
    edits = sample_selfedits(
        cfg,
        engines.sampler,
        ctx.formatter,
        contexts,
        r.samples_per_context,
        out / "self_edits.jsonl",
        ("round", out.name),
    )
    # Empty self-edits are never candidates: an empty one trains on the passage alone, could win
    # best-of-k and so teach the policy to stop at once. They are counted in the round record.
    counts = selfedit_counts(edits.values())
    edits = {key: e for key, e in edits.items() if e["text"]}
    clock, done = out / "reward_seconds.json", out / "rewards.json"
    spent = json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0
    if done.is_file():  # scored in full by an earlier attempt
        return json.loads(done.read_text()), spent, counts
    started = time.perf_counter()
    try:
        candidates = REWARDS[r.reward](ctx, engines, policy_path, contexts, edits, out)
        write_json(done, candidates)
    finally:  # a failed attempt's work is on disk and counts (a SIGKILLed one's time is lost)
        spent += time.perf_counter() - started
        write_json(clock, {"seconds": spent})
    return candidates, spent, counts


def selfedit_counts(edits) -> dict[str, int]:
    """Self-edits by status (ok | truncated | empty) and how many lost a cut last line."""
    edits = list(edits)
    return dict(Counter(e["status"] for e in edits)) | {
        "cut_line_dropped": sum(e.get("cut_line_dropped", False) for e in edits)
    }


def _candidate(article: Article, sample: int, edit: dict, **scores) -> dict:
    return {
        "context": article.index,
        "sample": sample,
        "title": article.title,
        "prompt": edit["prompt"],
        "completion": edit["text"],
        **scores,
        "num_tokens": edit["num_tokens"],
    }


def inner_rewards(
    ctx: RunContext, engines: Engines, policy_path: str, contexts: list[Article], edits: dict, out: Path
) -> list[dict]:
    """The paper's reward: mean adapted accuracy over `restem.inner_seeds` inner updates."""
    cfg, r = ctx.cfg, ctx.cfg.restem
    jobs = [
        (
            a,
            InnerJob(
                _candidate_key(a, s, i),
                edits[(a.index, s)]["sequences"],
                derive_seed(cfg.seed, out.name, a.index, s, i),
            ),
        )
        for a in contexts
        for s in range(r.samples_per_context)
        if (a.index, s) in edits
        for i in range(r.inner_seeds)
    ]
    updates = train_adapters(
        cfg,
        policy_path,
        ctx.tokenizer,
        [j for _, j in jobs],
        out / "updates.jsonl",
        out / "adapters",
        ctx.tracker,
    )
    units = [("baseline", a, None) for a in contexts]
    for article, job in jobs:
        adapter = adapter_for(updates.get(job.key), f"{out.parent.name}/{out.name}")
        if adapter is not None:
            units.append((job.key, article, adapter))
    results = answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, out / "rewards_qa.jsonl")
    accuracy = article_accuracies(results)
    candidates = []
    for a in contexts:
        for s in (s for s in range(r.samples_per_context) if (a.index, s) in edits):
            runs = [accuracy.get((_candidate_key(a, s, i), a.index)) for i in range(r.inner_seeds)]
            scored = [v for v in runs if v is not None]  # failed updates score nothing, and are counted
            candidates.append(
                _candidate(
                    a,
                    s,
                    edits[(a.index, s)],
                    reward=sum(scored) / len(scored) if scored else 0.0,
                    inner_runs=runs,
                    failed_inner_runs=len(runs) - len(scored),
                    baseline=accuracy.get(("baseline", a.index), 0.0),
                )
            )
    return candidates


def proxy_rewards_for(
    ctx: RunContext, engines: Engines, policy_path: str, contexts: list[Article], edits: dict, out: Path
) -> list[dict]:
    """No inner update: reward = the self-edit's gain in mean gold-answer log-probability per token
    when it precedes the question (proxy_gain), under the policy. The gain is already relative to
    the context without a self-edit, so the baseline is 0 and `positive_gain` keeps self-edits that
    make the answers likelier."""
    from seal_runner.domains.knowledge.proxy import AnswerLikelihood, proxy_rewards
    from seal_runner.models import load_causal_lm, release_memory

    cfg = ctx.cfg
    scorer = AnswerLikelihood(
        load_causal_lm(policy_path, dtype=cfg.model.dtype, device=cfg.device), ctx.tokenizer
    )
    candidates = [
        _candidate(a, s, edits[(a.index, s)], reward=None)
        for a in contexts
        for s in range(cfg.restem.samples_per_context)
        if (a.index, s) in edits
    ]
    records = proxy_rewards(
        scorer, ctx.formatter, candidates, {a.index: a for a in contexts}, cfg.domain.topic_prefix
    )
    del scorer
    release_memory()
    for c, scored in zip(candidates, records, strict=True):
        c |= {
            "reward": scored["proxy_gain"],
            "proxy": scored["proxy"],
            "baseline": 0.0,
            "inner_runs": [],
            "failed_inner_runs": 0,
            "reward_seconds": scored["seconds"],
        }
    return candidates


REWARDS = {Reward.inner: inner_rewards, Reward.proxy: proxy_rewards_for}


def _candidate_key(article: Article, sample: int, inner_seed: int) -> str:
    """One inner run's id: its update record, adapter dir and graded answers all carry it."""
    return f"c{article.index:04d}-s{sample}-i{inner_seed}"


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    ctx = setup_run(cfg)
    d = cfg.domain
    heldout = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    pool = training_contexts(cfg, heldout)
    sft_cfg = SFTConfig(**OmegaConf.to_container(cfg.sft, resolve=True))
    policy = ctx.model_path
    rounds = []
    for r in range(cfg.restem.rounds + 1):
        round_start = time.perf_counter()
        engines = ctx.engines_for(policy)
        evaluation = evaluate_policy(ctx, engines, policy, heldout, ctx.run_dir / "eval" / f"round_{r}")
        record = {"round": r, "policy": policy, "reward": cfg.restem.reward, "heldout": evaluation}
        if r < cfg.restem.rounds:
            out = ctx.run_dir / f"round_{r}"
            contexts = pool[r * cfg.restem.contexts_per_round : (r + 1) * cfg.restem.contexts_per_round]
            candidates, reward_seconds, counts = rewards_for_round(ctx, engines, policy, contexts, out)
            engines.close()
            chosen = select(candidates, cfg.restem.selection, cfg.restem.threshold)
            write_json(out / "sft.json", chosen)
            ctx.tracker.table(
                f"round_{r}/self_edits",
                [
                    {
                        "context": c["context"],
                        "sample": c["sample"],
                        "reward": c["reward"],
                        "baseline": c["baseline"],
                        "chosen": any(c is x for x in chosen),
                        "self_edit": c["completion"],
                    }
                    for c in candidates
                ],
            )
            record |= {
                "reward_seconds": reward_seconds,
                "rewards": reward_stats(candidates),
                "chosen": len(chosen),
                "inner_failures": sum(c["failed_inner_runs"] for c in candidates),
                "selfedits": counts,
            }
            if chosen:
                from seal_runner.outer import train_sft

                stats = train_sft(
                    policy,
                    [(c["prompt"], c["completion"]) for c in chosen],
                    out / "policy",
                    sft_cfg,
                    device=cfg.device,
                    dtype=cfg.model.dtype,
                )
                record["sft"] = {
                    k: stats[k] for k in ("examples", "steps", "final_loss", "seconds", "resumed")
                }
                policy = str(out / "policy")
            else:
                log.warning("round %d: no self-edit selected; the policy is unchanged", r)
        else:
            engines.close()
        record["seconds"] = time.perf_counter() - round_start
        record["api_usage"] = ctx.log_api_usage()  # running totals: a round's cost is the difference
        rounds.append(record)
        # No `step=`: step-less inner-loop logs have already moved W&B's step past r.
        ctx.tracker.log(_round_metrics(record) | {"round": r})
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "restem",
        "reward": cfg.restem.reward,
        "run_dir": str(ctx.run_dir),
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "heldout_articles": len(heldout),
        "heldout_data": d.data_path,
        "rounds": rounds,
        "comparisons": comparisons(rounds),
        "table2": table2_rows(rounds),
        "final_policy": policy,
        "final_policy_round": cfg.restem.rounds,
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": rounds[-1]["heldout"]["selfedit"]["macro_accuracy"],
    }
    summary["plots"] = {
        "round_curve": str(plot_round_curve(summary, ctx.run_dir / "round_curve.png")),
        "table2": str(
            plot_table2(summary["table2"], ctx.run_dir / "table2.png", f"{cfg.experiment_name}: Table 2")
        ),
    }
    write_json(ctx.run_dir / "summary.json", summary)
    for name, path in summary["plots"].items():
        ctx.tracker.image(f"plots/{name}", path)
    ctx.tracker.summary(
        {"final/selfedit_accuracy": summary["objective"], "seed": cfg.seed, "versions": versions()}
    )
    ctx.tracker.finish()
    print(format_table(summary))
    return summary


def _round_metrics(record: dict) -> dict:
    h = record["heldout"]
    metrics = {
        f"heldout/{c}_accuracy{suffix}": h[c][key]
        for c in ("base", "selfedit", "passage")
        if c in h
        for suffix, key in (("", "macro_accuracy"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))
    }
    metrics["heldout/selfedit_tokens"] = h["mean_selfedit_tokens"]
    if "rewards" in record:
        metrics |= {f"reward/{k}": v for k, v in record["rewards"].items() if isinstance(v, int | float)}
    if "sft" in record:
        metrics["sft/final_loss"] = record["sft"]["final_loss"]
    return metrics


LONG_DEMO = "seal-run experiment=demo/seal_effect_cpu"


def _cell(result: dict | None) -> str:
    if result is None:
        return "–"
    return (
        f"{100 * result['macro_accuracy']:.1f} [{100 * result['ci_low']:.1f}, {100 * result['ci_high']:.1f}]"
    )


def format_table(summary: dict) -> str:
    """Every accuracy with its 95% CI over articles; every difference paired, marked when its CI
    contains 0."""
    rounds = summary["rounds"]
    samples = rounds[0]["heldout"]["selfedit"].get("samples", 1)
    lines = [
        f"\n{summary['experiment']}: held-out accuracy (%) per policy, macro over "
        f"{summary['heldout_articles']} articles [95% bootstrap CI]; self-edit = mean of {samples} "
        "self-edit(s) per article, each applied by its own update",
        f"{'policy':<9} {'no update':>20} {'passage only':>20} {'own self-edit':>20} {'mean / best-of-k reward':>24} "
        f"{'kept':>5}",
    ]
    for r in rounds:
        h, rewards = r["heldout"], r.get("rewards", {})
        reward = (
            ""
            if rewards.get("mean_reward") is None
            else f"{100 * rewards['mean_reward']:.1f} / {100 * rewards['mean_best_of_k']:.1f}"
            if r["reward"] == Reward.inner  # the proxy's reward is a log-likelihood gain
            else f"{rewards['mean_reward']:+.3f} / {rewards['mean_best_of_k']:+.3f}"
        )
        name = "start" if r["round"] == 0 else f"round {r['round']}"
        lines.append(
            f"{name:<9} {_cell(h['base']):>20} {_cell(h.get('passage')):>20} {_cell(h['selfedit']):>20} "
            f"{reward:>24} {r.get('chosen', ''):>5}"
        )
    lines.append("paired differences (a - b over the same articles) [95% CI]:")
    for name, diff in summary["comparisons"].items():
        noise = " (within noise)" if diff["within_noise"] else ""
        lines.append(
            f"  {name:<38} {100 * diff['mean']:+.1f} pts [{100 * diff['ci_low']:+.1f}, "
            f"{100 * diff['ci_high']:+.1f}], {diff['n']} articles{noise}"
        )
    lines.append(
        f"total {summary['total_s']:.0f} s; final policy (after round {summary['final_policy_round']}): "
        f"{summary['final_policy']}; plots: {', '.join(summary['plots'].values())}"
    )
    if summary["experiment"] != "demo_seal_effect_cpu":
        lines.append(f"the long SEAL-effect demo (about 2.5 h on 2 cores): {LONG_DEMO}")
    return "\n".join(lines)
