"""ReSTEM selection: which sampled self-edits become outer-loop SFT targets.

Input is a reward table, one dict per (context, sample):
`{"context": int, "sample": int, "reward": float, "baseline": float, ...}` where `reward` is the
adapted score averaged over the inner seeds and `baseline` the context's no-update score. Extra keys
(prompt, completion, ...) ride along untouched, so the caller can build (prompt → completion) pairs
straight from the selected dicts.

Rules (the `restem.selection` config value):

- `best_of_k` (the paper's knowledge rule): per context the single highest reward; ties go to the
  lowest sample index (the earliest sample); no comparison with the baseline, so every context
  contributes exactly one pair.
- `positive_gain`: per context the `best_of_k` candidate, kept only if `reward - baseline > 0`.
- `threshold`: per context the `best_of_k` candidate, kept only if `reward - baseline >= threshold`
  (equality kept; with `threshold=0` this also keeps zero-gain winners, unlike `positive_gain`).
- `all_positive` (the paper's ARC behaviour-cloning rule, "keep all correct pairs"): every candidate
  with `reward > 0`, any number per context; with ARC's 0/1 solved reward that is every solved pair.

Rewards are means of a few accuracies, so the same value summed in another order can differ in the
last bit; comparisons (ties, gains, thresholds) therefore allow a slack of `EPS` = 1e-9.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from seal_runner.choices import Choice

EPS = 1e-9


class SelectionRule(Choice):
    """`restem.selection`: the rules above."""

    best_of_k = "best_of_k"
    positive_gain = "positive_gain"
    threshold = "threshold"
    all_positive = "all_positive"


def select(candidates: Iterable[dict], rule: SelectionRule | str, threshold: float = 0.0) -> list[dict]:
    """The selected candidate dicts themselves (not copies), ordered by (context, sample).

    `threshold` is read only by the `threshold` rule. A config's rule was checked at composition; a
    plain string from Python is checked here.
    """
    if rule not in SelectionRule.values():
        raise ValueError(
            f"unknown selection rule {rule!r}; choose one of {', '.join(SelectionRule.values())}"
        )
    groups = group_by_context(candidates)
    if rule == SelectionRule.all_positive:
        return [c for _, group in sorted(groups.items()) for c in group if c["reward"] > 0]
    best = [best_candidate(groups[context]) for context in sorted(groups)]
    return [c for c in best if _keeps(c, rule, threshold)]


def _keeps(best: dict, rule: str, threshold: float) -> bool:
    """Whether a context's best candidate survives the rule's baseline test."""
    if rule == SelectionRule.best_of_k:
        return True
    if rule == SelectionRule.positive_gain:
        return _gain(best) > EPS
    return _gain(best) >= threshold - EPS  # SelectionRule.threshold


def best_candidate(group: list[dict]) -> dict:
    """Highest reward; among rewards within EPS of the best, the lowest sample index."""
    top = max(c["reward"] for c in group)
    return min((c for c in group if c["reward"] >= top - EPS), key=lambda c: c["sample"])


def group_by_context(candidates: Iterable[dict]) -> dict[int, list[dict]]:
    """Validate and group by context, each group sorted by sample: a bad row would silently skew
    what the policy learns."""
    groups: dict[int, list[dict]] = {}
    seen: set[tuple[int, int]] = set()
    for c in candidates:
        missing = [k for k in ("context", "sample", "reward") if k not in c]
        if missing:
            raise ValueError(f"candidate {c!r} lacks {missing}")
        key = (c["context"], c["sample"])
        if key in seen:
            raise ValueError(f"duplicate candidate context={key[0]} sample={key[1]}")
        seen.add(key)
        if not math.isfinite(c["reward"]):
            raise ValueError(f"non-finite reward {c['reward']!r} for context={key[0]} sample={key[1]}")
        groups.setdefault(c["context"], []).append(c)
    for context, group in groups.items():
        group.sort(key=lambda c: c["sample"])
        baselines = [c.get("baseline") for c in group]
        if any(b is not None for b in baselines) and (
            None in baselines or max(baselines) - min(baselines) > EPS
        ):
            raise ValueError(f"context {context} has inconsistent baselines {baselines}")
    return groups


def _gain(candidate: dict) -> float:
    if candidate.get("baseline") is None:
        raise ValueError(
            f"rule needs a baseline but context={candidate['context']} sample={candidate['sample']} has none"
        )
    return candidate["reward"] - candidate["baseline"]


def reward_stats(candidates: Iterable[dict]) -> dict:
    """Round summary in the paper's terms (its RL table: baseline / mean adapted / best-of-5).

    Means are macro over contexts (per-context mean first, as the paper averages over articles). The
    two spreads are the reference's (query_server.py), both sample stds (ddof 1):
    `within_context_std`, the std of the rewards inside each context, averaged over contexts (the
    spread best-of-k selects from; its mean_adapter_std_over_completions), and `run_to_run_std`, the
    std of one self-edit's adapted accuracy over its `inner_runs` (the inner seeds), averaged over
    self-edits (the noise in one reward; its mean_adapter_std_within_completions). A context with
    one candidate, or a self-edit with fewer than two successful inner runs, has no std and is left
    out (the reference counts it as 0). Values are None where nothing defines them.
    """
    candidates = list(candidates)
    groups = group_by_context(candidates)
    rewards = {k: [c["reward"] for c in g] for k, g in groups.items()}
    baselines = [g[0]["baseline"] for g in groups.values() if g[0].get("baseline") is not None]
    stds = [statistics.stdev(r) for r in rewards.values() if len(r) > 1]
    runs = [[v for v in c.get("inner_runs", []) if v is not None] for c in candidates]
    mean_reward = _mean([_mean(r) for r in rewards.values()])
    mean_baseline = _mean(baselines) if len(baselines) == len(groups) else None
    return {
        "count": sum(len(r) for r in rewards.values()),
        "contexts": len(groups),
        "mean_reward": mean_reward,
        "mean_best_of_k": _mean([max(r) for r in rewards.values()]),
        "mean_baseline": mean_baseline,
        "mean_gain": None if mean_reward is None or mean_baseline is None else mean_reward - mean_baseline,
        "within_context_std": _mean(stds),
        "run_to_run_std": _mean([statistics.stdev(r) for r in runs if len(r) > 1]),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
