"""Score a finished ReSTEM run's candidates with the no-update proxy reward and compare rankings.

    python scripts/proxy_reward.py outputs/<restem run dir> [--rounds 0 1] [--out proxy.json]

For each round_<r>/rewards.json the round's policy (summary.json) scores every candidate by the
mean log-likelihood of its passage's gold answers with the self-edit in context
(seal_runner/domains/knowledge/proxy.py); printed and written: Spearman / Kendall agreement with
the true inner-loop reward (overall, within context, as a per-context selector) and the seconds
per candidate of the proxy vs the inner updates recorded in round_<r>/updates.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.domain import training_pool
from seal_runner.domains.knowledge.proxy import (
    inner_cost_per_candidate,
    proxy_rewards,
    rank_agreement,
)
from seal_runner.likelihood import AnswerLikelihood
from seal_runner.models import load_causal_lm, load_tokenizer
from seal_runner.prompts import PromptFormatter
from seal_runner.records import read_jsonl, write_json


def score_round(cfg, policy: str, round_dir: Path) -> dict:
    candidates = json.loads((round_dir / "rewards.json").read_text())
    d = cfg.domain
    heldout = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
    articles = {a.index: a for a in training_pool(cfg.domain, cfg.restem, heldout)}
    missing = {c["context"] for c in candidates} - set(articles)
    if missing:
        raise SystemExit(f"{round_dir}/rewards.json: contexts {sorted(missing)} are not in the run's data")
    tokenizer = load_tokenizer(policy)
    scorer = AnswerLikelihood(load_causal_lm(policy, dtype=cfg.model.dtype, device=cfg.device), tokenizer)
    records = proxy_rewards(
        scorer, PromptFormatter(tokenizer, cfg.model.chat), candidates, articles, d.topic_prefix
    )
    inner = inner_cost_per_candidate(read_jsonl(round_dir / "updates.jsonl"))
    for r in records:
        r["inner"] = inner.get((r["context"], r["sample"]))
    proxy_s = sum(r["seconds"] for r in records) / len(records)
    proxy_tokens = sum(r["tokens_forwarded"] for r in records) / len(records)
    inner_s = sum(c["seconds"] for c in inner.values()) / max(1, len(inner))
    # a training step costs ~3 forward passes (forward + backward) over its tokens
    inner_tokens = 3 * sum(c["train_tokens"] for c in inner.values()) / max(1, len(inner))
    return {
        "round": round_dir.name,
        "policy": policy,
        "agreement": {key: rank_agreement(records, key) for key in ("proxy", "proxy_gain")},
        "proxy_seconds_per_candidate": proxy_s,
        "proxy_cpu_seconds_per_candidate": sum(r["cpu_seconds"] for r in records) / len(records),
        "inner_seconds_per_candidate": inner_s,
        "proxy_tokens_per_candidate": proxy_tokens,
        "inner_forward_equivalent_tokens_per_candidate": inner_tokens,
        "speedup_seconds": inner_s / proxy_s,
        "speedup_tokens": inner_tokens / proxy_tokens,
        "candidates": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=int, nargs="*", help="default: every round with a rewards.json")
    parser.add_argument("--out", type=Path, help="default: <run_dir>/proxy_reward.json")
    args = parser.parse_args()
    summary_file = args.run_dir / "summary.json"
    if not summary_file.is_file():
        raise SystemExit(f"{summary_file}: missing; the ReSTEM run has not finished")
    summary = json.loads(summary_file.read_text())
    if summary.get("stage") != "restem":
        raise SystemExit(f"{summary_file}: stage={summary.get('stage')!r}, not a restem run")
    cfg = OmegaConf.load(args.run_dir / ".hydra" / "config.yaml")
    rounds = args.rounds
    if rounds is None:
        rounds = [
            r["round"]
            for r in summary["rounds"]
            if (args.run_dir / f"round_{r['round']}/rewards.json").is_file()
        ]
    results = [score_round(cfg, summary["rounds"][r]["policy"], args.run_dir / f"round_{r}") for r in rounds]
    out = args.out or args.run_dir / "proxy_reward.json"
    write_json(out, results)
    for res in results:
        print(f"\n{res['round']}: {len(res['candidates'])} candidates, policy {res['policy']}")
        print(
            f"{'proxy':<11} {'spearman':>9} {'kendall':>8} {'within-ctx S':>13} {'within-ctx K':>13} {'pick=best':>10} {'pick / best / random reward':>28}"
        )
        for key, a in res["agreement"].items():
            print(
                f"{key:<11} {a['spearman']:>9.3f} {a['kendall_tau_b']:>8.3f} "
                f"{a['within_context_spearman']:>13.3f} {a['within_context_kendall_tau_b']:>13.3f} "
                f"{a['pick_is_best']:>10.2f} "
                f"{a['reward_of_pick']:>10.3f} / {a['reward_of_best']:.3f} / {a['reward_of_random']:.3f}"
            )
        print(
            f"per candidate: proxy {res['proxy_seconds_per_candidate']:.2f} s wall "
            f"({res['proxy_cpu_seconds_per_candidate']:.2f} s CPU), inner updates "
            f"{res['inner_seconds_per_candidate']:.2f} s wall (training only, as recorded) -> "
            f"{res['speedup_seconds']:.1f}x; tokens forwarded: proxy {res['proxy_tokens_per_candidate']:.0f}, "
            f"inner 3 x train tokens {res['inner_forward_equivalent_tokens_per_candidate']:.0f} -> "
            f"{res['speedup_tokens']:.1f}x"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
