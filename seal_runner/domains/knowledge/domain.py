"""The knowledge domain for SEAL's outer loop (paper §4.2): passages in, implications out, QA as reward.

Contexts are SQuAD-style articles. A self-edit's reward (`restem.reward`) is `inner`, the paper's
mean adapted accuracy over `restem.inner_seeds` inner updates, or `proxy`, no update and the
self-edit's gain in gold-answer log-likelihood. The held-out evaluation of a policy measures base
accuracy, accuracy after its own self-edit(s) and optionally after the passage alone, each with a
bootstrap CI, so rounds compare paired over the same articles.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_runner.choices import Reward, RewardBaseline
from seal_runner.config import HFEngineConfig
from seal_runner.domains.knowledge import table2
from seal_runner.domains.knowledge.data import Article, load_articles
from seal_runner.domains.knowledge.evaluate import article_accuracies, mean_and_se, mean_over_samples
from seal_runner.domains.knowledge.pipeline import (
    adapter_for,
    answer_logprobs,
    answer_units,
    sample_selfedits,
    train_adapters,
)
from seal_runner.domains.knowledge.report import (
    comparisons,
    difference_line,
    fixed_learner,
    plot_round_curve,
    plot_table2,
    table2_rows,
)
from seal_runner.engines.base import LoraAdapter
from seal_runner.errors import InputError
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import derive_seed, write_json
from seal_runner.stages.common import Engines, RunContext
from seal_runner.stats import bootstrap_mean_ci, paired_difference

log = logging.getLogger(__name__)

# Where a default-job user sees the SEAL effect this project has measured (RESULTS.md, "Session 11, fixed1").
LONG_DEMO = "seal-run experiment=demo/seal_effect_fixed_learner_cpu"
LONG_DEMO_NAME = "demo_seal_effect_fixed_learner_cpu"


def round_file_contexts(path: str, n: int, heldout: list[Article]) -> list[Article]:
    """One round's training passages from its own file (`restem.train_data_per_round`): the first
    `n` in file order, as the reference's query_server.py takes `dataset[:n_articles]` of the round's
    data/synthetic_data/train/iter<k>_train.json. Passages also held out are warned about."""
    contexts = load_articles(path, 0, n)
    if len(contexts) < n:
        log.warning(
            "%s holds only %d training contexts for restem.contexts_per_round=%d", path, len(contexts), n
        )
    shared = {a.context for a in heldout} & {a.context for a in contexts}
    if shared:
        log.warning("%s: %d training passages are also in the held-out set", path, len(shared))
    return contexts


def check_per_round(r: DictConfig) -> None:
    """A per-round list must name every round (`restem.rounds`); a longer one's tail is unused."""
    for key in ("split_newlines_per_round", "train_data_per_round"):
        values = r.get(key)
        if values is not None and len(values) < r.rounds:
            raise InputError(
                f"restem.{key} has {len(values)} entries for restem.rounds={r.rounds}; give one per round"
            )


def training_pool(d: DictConfig, r: DictConfig, heldout: list[Article]) -> list[Article]:
    """Every round's training articles in order (`restem.contexts_per_round` per round): from
    `restem.train_data_path` (default: the held-out file, then after the held-out slice)."""
    path = r.train_data_path or d.data_path
    start = r.train_start + (d.start + len(heldout) if path == d.data_path else 0)
    pool = load_articles(path, start, r.contexts_per_round * r.rounds, d.shuffle_seed)
    if len(pool) < r.contexts_per_round * r.rounds:
        log.warning("only %d training contexts for %d rounds x %d", len(pool), r.rounds, r.contexts_per_round)
    return pool


def round_split_newlines(r: DictConfig, out: Path) -> bool | None:
    """The split rule of the round whose records live in `out` (stage=restem writes round k's under
    round_<k>/, stages/restem.py `improve`): its `restem.split_newlines_per_round` entry, or None
    (domain.split_newlines) when that key is unset."""
    rules = r.get("split_newlines_per_round")
    if rules is None:
        return None
    return rules[int(out.name.removeprefix("round_"))]


class KnowledgeDomain:
    """`domain._target_` of conf/domain/knowledge.yaml. The inner-loop steps (pipeline.py) still take
    the run's config for the shared groups (sampling, selfedit_prompt, lora, inner)."""

    objective_name = "selfedit_accuracy"

    def __init__(self, run: RunContext, restem: DictConfig, **settings) -> None:
        if restem.reward not in REWARDS:
            raise InputError(
                f"restem.reward={restem.reward} is not a knowledge reward; choose from {', '.join(REWARDS)}"
            )
        scoring = restem.reward == Reward.likelihood or restem.get("heldout_likelihood", False)
        if scoring and run.cfg.qa_engine._target_ != HFEngineConfig._target_:
            raise InputError(
                "restem.reward=likelihood and restem.heldout_likelihood score gold answers by "
                f"teacher forcing, which only the transformers engine does: add engine@qa_engine=hf "
                f"(qa_engine is {run.cfg.qa_engine._target_})"
            )
        if restem.reward_baseline == RewardBaseline.passage and restem.reward == Reward.proxy:
            raise InputError(
                "restem.reward_baseline=passage compares an inner update with one on the passage alone; "
                "restem.reward=proxy makes no update: use reward=inner or likelihood, or reward_baseline=no_update"
            )
        check_per_round(restem)
        self.run, self.cfg, self.r = run, run.cfg, restem
        self.d = OmegaConf.create(settings)
        self._heldout: list[Article] | None = None
        self._pool: list[Article] | None = None

    def heldout(self) -> list[Article]:
        if self._heldout is None:
            d = self.d
            self._heldout = load_articles(d.data_path, d.start, d.n_articles, d.shuffle_seed)
        return self._heldout

    def training_contexts(self, round: int) -> list[Article]:
        n, files = self.r.contexts_per_round, self.r.get("train_data_per_round")
        if files is not None:
            return round_file_contexts(files[round], n, self.heldout())
        if self._pool is None:
            self._pool = training_pool(self.d, self.r, self.heldout())
        return self._pool[round * n : (round + 1) * n]

    def sample(self, engine, contexts: list[Article], out: Path) -> dict[tuple[int, int], dict]:
        run = self.run
        path, tag = out / "self_edits.jsonl", ("round", out.name)
        return sample_selfedits(
            self.cfg,
            engine,
            run.formatter,
            contexts,
            self.r.samples_per_context,
            path,
            tag,
            split_newlines=round_split_newlines(self.r, out),
        )

    def score(
        self, engines: Engines, policy: str, contexts: list[Article], edits: dict, out: Path
    ) -> list[dict]:
        return REWARDS[self.r.reward](self, engines, policy, contexts, edits, out)

    def round_fields(self, edits: dict, candidates: list[dict]) -> dict:
        return {
            "inner_failures": sum(c["failed_inner_runs"] for c in candidates),
            "selfedits": selfedit_counts(edits.values()),
        }

    def evaluate(self, engines: Engines, policy: str, heldout: list[Article], out: Path) -> dict:
        """Held-out accuracy of a policy: no update (`base`), after an update on each of its
        `restem.heldout_samples` own self-edits (`selfedit`, per article the mean over the samples),
        and with `restem.heldout_passage` after an update on the passage alone (`passage`). Each
        condition carries its per-article accuracies, so rounds and rows can be compared paired; with
        two or more samples, sample 0 vs sample 1 of this same policy is the noise floor of a
        difference."""
        run, cfg, r = self.run, self.cfg, self.r
        edits = sample_selfedits(
            cfg,
            engines.sampler,
            run.formatter,
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
            policy,
            run.tokenizer,
            [j for _, _, j in jobs],
            out / "updates.jsonl",
            out / "adapters",
            run.tracker,
        )
        units = [("base", a, None) for a in heldout] + [
            (condition, a, adapter)
            for condition, a, job in jobs
            if (adapter := adapter_for(updates.get(job.key), f"{out.parent.name}/{out.name}"))
        ]
        results = answer_units(cfg, engines.qa, run.grader(), run.formatter, units, out / "results.jsonl")
        per_article, samples = _per_condition(article_accuracies(results), r)
        summary = {condition: _accuracy_summary(values) for condition, values in per_article.items()}
        if r.heldout_likelihood:
            logprob = answer_logprobs(
                engines.qa, run.formatter, units, self.d.topic_prefix, out / "answer_logprobs.jsonl"
            )
            summary["answer_logprob"] = {
                condition: _summary(values, "mean_logprob") | {"per_article": values}
                for condition, values in _per_condition(logprob, r)[0].items()
            }
        summary["selfedit"]["samples"] = r.heldout_samples
        summary["failed_updates"] = sum(bool(u.get("failed")) for u in updates.values())
        summary["per_article"] = per_article
        if len(samples) > 1:
            summary["noise_floor"] = paired_difference(samples[1], samples[0]).as_dict()
        summary["mean_selfedit_tokens"] = sum(e["num_tokens"] for e in edits.values()) / max(1, len(edits))
        summary["selfedits"] = selfedit_counts(edits.values())
        write_json(out / "summary.json", summary)
        return summary

    def round_metrics(self, record: dict) -> dict[str, float]:
        h = record["heldout"]
        metrics = {
            f"heldout/{c}_accuracy{suffix}": h[c][key]
            for c in ("base", "selfedit", "passage")
            if c in h
            for suffix, key in (("", "macro_accuracy"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))
        }
        metrics |= {
            f"heldout/{c}_answer_logprob": v["mean_logprob"] for c, v in h.get("answer_logprob", {}).items()
        }
        metrics["heldout/selfedit_tokens"] = h["mean_selfedit_tokens"]
        return metrics

    def report(self, heldout: list[Article], rounds: list[dict]) -> dict:
        return {
            "heldout_articles": len(heldout),
            "heldout_data": self.d.data_path,
            "comparisons": comparisons(rounds),
            "likelihood_comparisons": comparisons(rounds, "answer_logprob"),
            "table2": table2_rows(rounds),
            "objective": rounds[-1]["heldout"]["selfedit"]["macro_accuracy"],
        }

    def plots(self, summary: dict, run_dir: Path) -> dict[str, str]:
        title = f"{summary['experiment']}: Table 2"
        return {
            "round_curve": str(plot_round_curve(summary, run_dir / "round_curve.png")),
            "table2": str(plot_table2(summary["table2"], run_dir / "table2.png", title)),
        }

    def format_table(self, summary: dict) -> str:
        return format_table(summary)

    # stage=evaluate: the paper's Table 2 (domains/knowledge/table2.py); no instance, so none of the
    # outer loop's restem checks above applies to it
    check_conditions = staticmethod(table2.check_conditions)
    evaluate_conditions = staticmethod(table2.measure)
    format_conditions = staticmethod(table2.format_table)


def _sample_suffix(sample: int) -> str:
    """Sample 0 keeps the names runs wrote before several held-out samples existed (resume)."""
    return f"-s{sample}" if sample else ""


def _per_condition(values: dict[tuple[str, int], float], r: DictConfig) -> tuple[dict, list[dict]]:
    """Per-article values of base, selfedit (mean over the held-out samples) and passage (when
    measured); and each self-edit sample's own values (the noise floor's inputs)."""
    samples = [_accuracies(values, f"selfedit{_sample_suffix(s)}") for s in range(r.heldout_samples)]
    out = {"base": _accuracies(values, "base"), "selfedit": mean_over_samples(samples)}
    if r.heldout_passage:
        out["passage"] = _accuracies(values, "passage")
    return out, samples


def _accuracies(accuracy: dict[tuple[str, int], float], condition: str) -> dict[int, float]:
    return {article: acc for (c, article), acc in accuracy.items() if c == condition}


def _accuracy_summary(per_article: dict[int, float]) -> dict:
    """Macro accuracy with its SE and bootstrap 95% CI over articles."""
    return _summary(per_article, "macro_accuracy")


def _summary(per_article: dict[int, float], name: str) -> dict:
    values = list(per_article.values())
    mean, se = mean_and_se(values)
    _, low, high = bootstrap_mean_ci(values)
    return {name: mean, "se": se, "ci_low": low, "ci_high": high, "articles": len(values)}


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


def _reward_jobs(
    domain: KnowledgeDomain, contexts: list[Article], edits: dict, out: Path
) -> list[tuple[Article, InnerJob]]:
    """One inner update per (context, sampled self-edit, inner seed), seeded by the round; with
    `restem.reward_baseline=passage` also one per context on the context alone."""
    seed, r = domain.cfg.seed, domain.r
    passage = [
        (
            a,
            InnerJob(
                _passage_key(a), [f"{a.title}\n{a.context}"], derive_seed(seed, out.name, a.index, "passage")
            ),
        )
        for a in contexts
        if r.reward_baseline == RewardBaseline.passage
    ]
    return passage + [
        (
            a,
            InnerJob(
                _candidate_key(a, s, i),
                edits[(a.index, s)]["sequences"],
                derive_seed(seed, out.name, a.index, s, i),
            ),
        )
        for a in contexts
        for s in range(r.samples_per_context)
        if (a.index, s) in edits
        for i in range(r.inner_seeds)
    ]


def _reward_units(
    domain: KnowledgeDomain, policy: str, contexts: list[Article], edits: dict, out: Path
) -> list[tuple[str, Article, LoraAdapter | None]]:
    """Train every reward job's adapter (resumable) and return the units to score: each context
    without an update (`baseline`), then each successful update under its candidate key."""
    run = domain.run
    jobs = _reward_jobs(domain, contexts, edits, out)
    updates = train_adapters(
        domain.cfg,
        policy,
        run.tokenizer,
        [j for _, j in jobs],
        out / "updates.jsonl",
        out / "adapters",
        run.tracker,
    )
    units = [("baseline", a, None) for a in contexts]
    for article, job in jobs:
        adapter = adapter_for(updates.get(job.key), f"{out.parent.name}/{out.name}")
        if adapter is not None:
            units.append((job.key, article, adapter))
    return units


def _passage_baseline(
    domain: KnowledgeDomain, contexts: list[Article], scores: dict[tuple[str, int], float], offset
) -> dict[int, dict]:
    """Per context, what `positive_gain` compares a reward with under `restem.reward_baseline=passage`:
    the learner's score after an update on the context alone, on the reward's scale (minus the same
    `offset`), recorded as `baseline_kind: passage`. A context whose passage update failed keeps the
    reward's own no-update baseline, and the log names it."""
    fields = {}
    for a in contexts:
        score = scores.get((_passage_key(a), a.index))
        if score is None:
            log.warning("context %d: the passage-only update failed; its baseline is no update", a.index)
            continue
        fields[a.index] = {"baseline": score - offset(a), "baseline_kind": RewardBaseline.passage.value}
    return fields


def _scored_candidates(
    domain: KnowledgeDomain,
    contexts: list[Article],
    edits: dict,
    scores: dict[tuple[str, int], float],
    offset: Callable[[Article], float],
    context_fields: Callable[[Article], dict],
) -> list[dict]:
    """One candidate per sampled self-edit: reward = mean over its inner runs of the run's score
    (`scores[(candidate key, article)]`) minus the context's `offset`; a failed update scores nothing
    and is counted. `inner_runs` keeps the raw scores, `context_fields` adds the context's baseline
    (the passage-only update's score instead, under `restem.reward_baseline=passage`)."""
    r = domain.r
    passage = (
        _passage_baseline(domain, contexts, scores, offset)
        if r.reward_baseline == RewardBaseline.passage
        else {}
    )
    candidates = []
    for a in contexts:
        for s in (s for s in range(r.samples_per_context) if (a.index, s) in edits):
            runs = [scores.get((_candidate_key(a, s, i), a.index)) for i in range(r.inner_seeds)]
            scored = [v - offset(a) for v in runs if v is not None]
            candidates.append(
                _candidate(
                    a,
                    s,
                    edits[(a.index, s)],
                    reward=sum(scored) / len(scored) if scored else 0.0,
                    inner_runs=runs,
                    failed_inner_runs=len(runs) - len(scored),
                    **(context_fields(a) | passage.get(a.index, {})),
                )
            )
    return candidates


def inner_rewards(
    domain: KnowledgeDomain, engines: Engines, policy: str, contexts: list[Article], edits: dict, out: Path
) -> list[dict]:
    """The paper's reward: mean adapted accuracy over `restem.inner_seeds` inner updates."""
    run, cfg = domain.run, domain.cfg
    units = _reward_units(domain, policy, contexts, edits, out)
    results = answer_units(cfg, engines.qa, run.grader(), run.formatter, units, out / "rewards_qa.jsonl")
    accuracy = article_accuracies(results)
    return _scored_candidates(
        domain,
        contexts,
        edits,
        accuracy,
        lambda a: 0.0,
        lambda a: {"baseline": accuracy.get(("baseline", a.index), 0.0)},
    )


def likelihood_rewards(
    domain: KnowledgeDomain, engines: Engines, policy: str, contexts: list[Article], edits: dict, out: Path
) -> list[dict]:
    """The paper's inner update, scored densely: reward = mean over `restem.inner_seeds` updates of
    the gain in mean gold-answer log-probability per token (no context, teacher-forced) over the
    policy without an update. Where greedy answers after a small update are almost all wrong (the
    paper-shaped CPU regime: 0 of 47 candidates above 0 in RESULTS.md's run3), accuracy cannot rank
    the candidates; how much likelier the answers became can. The baseline is 0 (the reward is
    already a gain), so `positive_gain` keeps updates that made the answers likelier."""
    run = domain.run
    units = _reward_units(domain, policy, contexts, edits, out)
    logprob = answer_logprobs(
        engines.qa, run.formatter, units, domain.d.topic_prefix, out / "rewards_logprob.jsonl"
    )
    before = {a.index: logprob[("baseline", a.index)] for a in contexts}
    return _scored_candidates(
        domain,
        contexts,
        edits,
        logprob,
        lambda a: before[a.index],
        lambda a: {"baseline": 0.0, "baseline_logprob": before[a.index]},
    )


def proxy_rewards_for(
    domain: KnowledgeDomain, engines: Engines, policy: str, contexts: list[Article], edits: dict, out: Path
) -> list[dict]:
    """No inner update: reward = the self-edit's gain in mean gold-answer log-probability per token
    when it precedes the question (proxy_gain), under the policy. The gain is already relative to
    the context without a self-edit, so the baseline is 0 and `positive_gain` keeps self-edits that
    make the answers likelier."""
    from seal_runner.domains.knowledge.proxy import proxy_rewards
    from seal_runner.likelihood import AnswerLikelihood
    from seal_runner.models import load_causal_lm, release_memory

    run, cfg = domain.run, domain.cfg
    scorer = AnswerLikelihood(load_causal_lm(policy, dtype=cfg.model.dtype, device=cfg.device), run.tokenizer)
    candidates = [
        _candidate(a, s, edits[(a.index, s)], reward=None)
        for a in contexts
        for s in range(domain.r.samples_per_context)
        if (a.index, s) in edits
    ]
    records = proxy_rewards(
        scorer, run.formatter, candidates, {a.index: a for a in contexts}, domain.d.topic_prefix
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


REWARDS = {
    Reward.inner: inner_rewards,
    Reward.likelihood: likelihood_rewards,
    Reward.proxy: proxy_rewards_for,
}


def _candidate_key(article: Article, sample: int, inner_seed: int) -> str:
    """One inner run's id: its update record, adapter dir and graded answers all carry it."""
    return f"c{article.index:04d}-s{sample}-i{inner_seed}"


def _passage_key(article: Article) -> str:
    """The id of a context's passage-only update (`restem.reward_baseline=passage`)."""
    return f"c{article.index:04d}-passage"


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
        "self-edit(s) per article, each applied by its own update"
        + ("; every update trains the starting model (restem.learner=base)" if fixed_learner(rounds) else ""),
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
    lines += [difference_line(name, diff, 100, 1, " pts") for name, diff in summary["comparisons"].items()]
    if summary.get("likelihood_comparisons"):
        lines.append(
            "gold-answer log-likelihood (mean log-prob per answer token, no context) [95% CI]: "
            + "; ".join(
                f"{'start' if r['round'] == 0 else 'round ' + str(r['round'])} "
                + ", ".join(
                    f"{c} {v['mean_logprob']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
                    for c, v in r["heldout"]["answer_logprob"].items()
                )
                for r in rounds
                if "answer_logprob" in r["heldout"]
            )
        )
        lines.append("  paired log-likelihood differences (a - b, nats per answer token) [95% CI]:")
        lines += [difference_line(n, d, 1, 3, "") for n, d in summary["likelihood_comparisons"].items()]
    lines.append(
        f"total {summary['total_s']:.0f} s; final policy (after round {summary['final_policy_round']}): "
        f"{summary['final_policy']}; plots: {', '.join(summary['plots'].values())}"
    )
    if summary["experiment"] != LONG_DEMO_NAME:
        lines.append(
            "the SEAL-effect demo (one round, about 95 min on 2 cores; its trained policy's self-edits "
            f"beat the base model's on answer likelihood, not yet the passage alone): {LONG_DEMO}"
        )
    return "\n".join(lines)
