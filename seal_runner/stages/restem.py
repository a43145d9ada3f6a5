"""`stage=restem`: SEAL's outer loop (ReSTEM = rejection sampling + SFT), written once for every domain.

Round r, with policy_r (round 0 = the starting model) and the domain picked by `domain._target_`
(seal_runner/domains/base.py); the learner, whose inner updates score self-edits, is policy_r (the
paper) or with `restem.learner=base` the starting model every round:
  1. held-out evaluation of policy_r's self-edits on the learner (`domain.evaluate`);
  2. sample self-edits on the round's training contexts with policy_r (`domain.sample`);
  3. reward each non-empty one (`domain.score`: knowledge = the learner's inner updates + graded QA;
     ARC = test-time training + solved or not);
  4. select (`restem.selection`), SFT policy_r on (self-edit prompt -> chosen self-edit), merge ->
     policy_{r+1}.
After the last round the final policy is evaluated too. Everything lives under round_<r>/ and
eval/round_<r>/ in the run dir and is skipped on a rerun once on disk. Steps 2-4 are `improve`, which
ARC's Table 1 (stage=evaluate, domains/arc/table1.py) also runs for its behaviour-cloning rounds
(`restem=arc_bc`) before its SEAL condition.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_runner.choices import RestemLearner
from seal_runner.config import SFTConfig
from seal_runner.domains.base import Domain
from seal_runner.records import write_json
from seal_runner.selection import reward_stats, select
from seal_runner.stages.common import Engines, RunContext, build_domain, setup_run, versions

log = logging.getLogger(__name__)


def scored_round(
    domain: Domain, engines: Engines, learner: str, contexts: list, out: Path
) -> tuple[list[dict], float, dict]:
    """The round's self-edits and their candidates, and the seconds the scoring took (sampling
    excluded: the cost a cheap reward exists to cut). The seconds are summed over every attempt at
    the round (reward_seconds.json), so a resumed run reports what the scoring cost in total, not
    the moments its rerun spent reading finished records."""
    edits = domain.sample(engines.sampler, contexts, out)
    # Empty self-edits are never candidates: an empty one trains on the context alone, could win
    # best-of-k and so teach the policy to stop at once. The domain counts them in the round record.
    kept = {key: e for key, e in edits.items() if e["text"]}
    clock, done = out / "reward_seconds.json", out / "rewards.json"
    spent = json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0
    if done.is_file():  # scored in full by an earlier attempt
        return json.loads(done.read_text()), spent, edits
    started = time.perf_counter()
    try:
        candidates = domain.score(engines, learner, contexts, kept, out)
        write_json(done, candidates)
    finally:  # a failed attempt's work is on disk and counts (a SIGKILLed one's time is lost)
        spent += time.perf_counter() - started
        write_json(clock, {"seconds": spent})
    return candidates, spent, edits


def round_learner(ctx: RunContext, policy: str) -> str:
    """The model a round's inner updates train (`restem.learner`): the policy, or the starting model."""
    return ctx.model_path if ctx.cfg.restem.learner == RestemLearner.base else policy


def writer_and_learner(ctx: RunContext, policy: str, learner: str) -> Engines:
    """The round's engines: `policy` samples the self-edits, `learner` (`restem.learner`) answers
    the questions under the adapters trained on it; one engine pair when they are the same model."""
    if learner == policy:
        return ctx.engines_for(policy)
    return Engines(ctx.engines_for(policy).sampler, ctx.engines_for(learner).qa)


def improve(
    ctx: RunContext, domain: Domain, engines: Engines, policy: str, learner: str, r: int, record: dict
) -> str:
    """Round `r`'s policy update: sample with `policy`, score by inner updates of `learner`, select,
    SFT `policy` and merge; returns the next policy and fills the round's `record`. `engines` are
    closed once the scoring is done (SFT needs the memory)."""
    cfg = ctx.cfg
    out = ctx.run_dir / f"round_{r}"
    contexts = domain.training_contexts(r)
    log.info(
        "round %d: sampling and scoring self-edits on %d training contexts (reward: %s)",
        r,
        len(contexts),
        cfg.restem.reward,
    )
    candidates, reward_seconds, edits = scored_round(domain, engines, learner, contexts, out)
    engines.close()
    chosen = select(candidates, cfg.restem.selection, cfg.restem.threshold)
    log.info("round %d: %d of %d candidates kept (%s)", r, len(chosen), len(candidates), cfg.restem.selection)
    write_json(out / "sft.json", chosen)
    ctx.tracker.table(
        f"round_{r}/self_edits",
        [
            {
                "context": c["context"],
                "sample": c["sample"],
                "reward": c["reward"],
                "baseline": c.get("baseline"),
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
    } | domain.round_fields(edits, candidates)
    if not chosen:
        log.warning("round %d: no self-edit selected; the policy is unchanged", r)
        return policy
    log.info("round %d: policy SFT on the %d kept pairs, merged into %s", r, len(chosen), out / "policy")
    from seal_runner.outer import train_sft

    stats = train_sft(
        policy,
        [(c["prompt"], c["completion"]) for c in chosen],
        out / "policy",
        SFTConfig(**OmegaConf.to_container(cfg.sft, resolve=True)),
        device=cfg.device,
        dtype=cfg.model.dtype,
    )
    record["sft"] = {k: stats[k] for k in ("examples", "steps", "final_loss", "seconds", "resumed")}
    return str(out / "policy")


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    ctx = setup_run(cfg)
    domain = build_domain(cfg, ctx)
    heldout = domain.heldout()
    policy = ctx.model_path
    rounds = []
    for r in range(cfg.restem.rounds + 1):
        round_start = time.perf_counter()
        learner = round_learner(ctx, policy)
        engines = writer_and_learner(ctx, policy, learner)
        log.info("round %d: held-out evaluation of %s (%d contexts)", r, policy_name(r), len(heldout))
        evaluation = domain.evaluate(engines, learner, heldout, ctx.run_dir / "eval" / f"round_{r}")
        record = {
            "round": r,
            "policy": policy,
            "learner": learner,
            "reward": cfg.restem.reward,
            "heldout": evaluation,
        }
        if r < cfg.restem.rounds:
            policy = improve(ctx, domain, engines, policy, learner, r, record)
        else:
            engines.close()
        record["seconds"] = time.perf_counter() - round_start
        record["api_usage"] = ctx.log_api_usage()  # running totals: a round's cost is the difference
        rounds.append(record)
        # No `step=`: step-less inner-loop logs have already moved W&B's step past r.
        ctx.tracker.log(round_metrics(domain, record) | {"round": r})
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "restem",
        "reward": cfg.restem.reward,
        "run_dir": str(ctx.run_dir),
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "rounds": rounds,
        "final_policy": policy,
        "final_policy_round": cfg.restem.rounds,
        "total_s": time.perf_counter() - started,
        "versions": versions(),
    } | domain.report(heldout, rounds)
    summary["plots"] = domain.plots(summary, ctx.run_dir)
    write_json(ctx.run_dir / "summary.json", summary)
    for name, path in summary["plots"].items():
        ctx.tracker.image(f"plots/{name}", path)
    ctx.tracker.summary(
        {f"final/{domain.objective_name}": summary["objective"], "seed": cfg.seed, "versions": versions()}
    )
    ctx.tracker.finish()
    print(domain.format_table(summary))
    return summary


def policy_name(r: int) -> str:
    """How the console names round r's policy: the table's rows are `start`, `round 1`, ..."""
    return "the starting policy" if r == 0 else f"the policy after round {r}"


def round_metrics(domain: Domain, record: dict) -> dict:
    """The domain's held-out scalars plus the loop's reward statistics and SFT loss."""
    metrics = domain.round_metrics(record)
    if "rewards" in record:
        metrics |= {f"reward/{k}": v for k, v in record["rewards"].items() if isinstance(v, int | float)}
    if "sft" in record:
        metrics["sft/final_loss"] = record["sft"]["final_loss"]
    return metrics
