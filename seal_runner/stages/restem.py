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
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_runner.choices import Reward
from seal_runner.config import SFTConfig
from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import article_accuracies, macro_accuracy
from seal_runner.domains.knowledge.pipeline import adapter_for, answer_units, sample_selfedits, train_adapters
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import derive_seed, write_json
from seal_runner.selection import reward_stats, select
from seal_runner.stages.common import Engines, RunContext, setup_run, versions

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
    """Held-out accuracy of a policy: no update, and after one update on its own self-edit."""
    cfg = ctx.cfg
    edits = sample_selfedits(
        cfg, engines.sampler, ctx.formatter, heldout, 1, out / "self_edits.jsonl", ("eval", out.name)
    )
    jobs = [
        InnerJob(
            f"selfedit-{a.index:04d}",
            edits[(a.index, 0)]["sequences"],
            derive_seed(cfg.seed, "eval-inner", a.index),
        )
        for a in heldout
    ]
    updates = train_adapters(
        cfg, policy_path, ctx.tokenizer, jobs, out / "updates.jsonl", out / "adapters", ctx.tracker
    )
    units = [("base", a, None) for a in heldout] + [
        ("selfedit", a, adapter)
        for a in heldout
        if (adapter := adapter_for(updates.get(f"selfedit-{a.index:04d}"), f"{out.parent.name}/{out.name}"))
    ]
    results = answer_units(cfg, engines.qa, ctx.grader(), ctx.formatter, units, out / "results.jsonl")
    summary = {
        c: dict(zip(("macro_accuracy", "se", "articles"), macro_accuracy(results, c), strict=True))
        for c in ("base", "selfedit")
    }
    summary["mean_selfedit_tokens"] = sum(e["num_tokens"] for e in edits.values()) / max(1, len(edits))
    write_json(out / "summary.json", summary)
    return summary


def rewards_for_round(
    ctx: RunContext, engines: Engines, policy_path: str, contexts: list[Article], out: Path
) -> tuple[list[dict], float]:
    """One candidate per (context, sample) scored by `restem.reward`, and the seconds the scoring
    took (sampling excluded): the cost the proxy reward exists to cut. The seconds are summed over
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
    clock, done = out / "reward_seconds.json", out / "rewards.json"
    spent = json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0
    if done.is_file():  # scored in full by an earlier attempt
        return json.loads(done.read_text()), spent
    started = time.perf_counter()
    try:
        candidates = REWARDS[r.reward](ctx, engines, policy_path, contexts, edits, out)
        write_json(done, candidates)
    finally:  # a failed attempt's work is on disk and counts (a SIGKILLed one's time is lost)
        spent += time.perf_counter() - started
        write_json(clock, {"seconds": spent})
    return candidates, spent


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
        for s in range(r.samples_per_context):
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
            candidates, reward_seconds = rewards_for_round(ctx, engines, policy, contexts, out)
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
        "rounds": rounds,
        "final_policy": policy,
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": rounds[-1]["heldout"]["selfedit"]["macro_accuracy"],
    }
    write_json(ctx.run_dir / "summary.json", summary)
    ctx.tracker.summary(
        {"final/selfedit_accuracy": summary["objective"], "seed": cfg.seed, "versions": versions()}
    )
    ctx.tracker.finish()
    print(format_table(summary))
    return summary


def _round_metrics(record: dict) -> dict:
    h = record["heldout"]
    metrics = {
        "heldout/base_accuracy": h["base"]["macro_accuracy"],
        "heldout/selfedit_accuracy": h["selfedit"]["macro_accuracy"],
        "heldout/selfedit_tokens": h["mean_selfedit_tokens"],
    }
    if "rewards" in record:
        metrics |= {f"reward/{k}": v for k, v in record["rewards"].items() if isinstance(v, int | float)}
    if "sft" in record:
        metrics["sft/final_loss"] = record["sft"]["final_loss"]
    return metrics


def format_table(summary: dict) -> str:
    lines = [
        f"\n{summary['experiment']}: held-out accuracy per round ({summary['heldout_articles']} articles, "
        "macro ± SE)",
        f"{'round':<6} {'no update':>10} {'self-edit':>10} {'mean reward':>12} {'chosen':>7}",
    ]
    for r in summary["rounds"]:
        h = r["heldout"]
        reward = r.get("rewards", {}).get("mean_reward")
        accuracy = r["reward"] == Reward.inner  # the proxy's reward is a log-likelihood gain
        shown = "" if reward is None else f"{100 * reward:.1f}%" if accuracy else f"{reward:+.3f}"
        lines.append(
            f"{r['round']:<6} {100 * h['base']['macro_accuracy']:>9.1f}% "
            f"{100 * h['selfedit']['macro_accuracy']:>9.1f}% {shown:>12} {r.get('chosen', ''):>7}"
        )
    lines.append(f"total {summary['total_s']:.0f} s; final policy {summary['final_policy']}")
    return "\n".join(lines)
