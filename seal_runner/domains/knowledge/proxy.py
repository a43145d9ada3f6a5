"""A reward for a self-edit without an inner update (the paper's cost problem, its Table 9 direction).

The true ReSTEM reward trains a LoRA adapter on the self-edit and grades no-context answers: seconds
to minutes per candidate. The proxy asks instead how much the self-edit, placed in the model's
context, raises the likelihood of the passage's gold answers: one batched forward pass per
candidate. A self-edit that states the facts the questions ask for should score high either way;
the proxy cannot see whether those facts survive training (format, length, repetition), which is
what the rank agreement with the true reward measures.

proxy       = mean over questions of the mean log-probability per gold-answer token, prompt =
              "<self-edit>\n\n" + the QA prompt (formatted like every other QA prompt);
proxy_gain  = proxy - the same without the self-edit (removes the context's difficulty, which
              the true reward keeps).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

from seal_runner.domains.knowledge.data import Article
from seal_runner.likelihood import AnswerLikelihood
from seal_runner.prompts import qa_prompt
from seal_runner.sweeps import by_choice


def answer_pairs(
    formatter, article: Article, self_edit: str | None, topic_prefix: bool
) -> list[tuple[str, str]]:
    """(prompt, gold answer) per question; the self-edit, when given, precedes the QA prompt."""
    pairs = []
    for qa in article.questions:
        question = qa_prompt(qa.question, article.title, topic_prefix)
        text = f"{self_edit.strip()}\n\n{question}" if self_edit is not None else question
        pairs.append((formatter(text), qa.answer))
    return pairs


def proxy_rewards(
    scorer: AnswerLikelihood,
    formatter,
    candidates: Sequence[dict],
    articles: dict[int, Article],
    topic_prefix: bool = True,
) -> list[dict]:
    """One record per candidate (rewards.json row): proxy, proxy_gain and what it cost: wall and CPU
    seconds, tokens forwarded (the no-self-edit reference of each context is shared, its cost
    spread over all candidates)."""
    started, cpu, tokens = time.perf_counter(), time.process_time(), scorer.tokens_forwarded
    contexts = sorted({c["context"] for c in candidates})
    reference = {i: _mean(scorer(answer_pairs(formatter, articles[i], None, topic_prefix))) for i in contexts}
    shared = (
        (time.perf_counter() - started) / len(candidates),
        (time.process_time() - cpu) / len(candidates),
        (scorer.tokens_forwarded - tokens) / len(candidates),
    )
    out = []
    for c in candidates:
        article = articles[c["context"]]
        if article.title != c["title"]:
            raise ValueError(
                f"candidate context {c['context']} is {c['title']!r} but the data has {article.title!r}"
            )
        tick, cpu, tokens = time.perf_counter(), time.process_time(), scorer.tokens_forwarded
        proxy = _mean(scorer(answer_pairs(formatter, article, c["completion"], topic_prefix)))
        out.append(
            {
                "context": c["context"],
                "sample": c["sample"],
                "reward": c["reward"],
                "proxy": proxy,
                "proxy_gain": proxy - reference[c["context"]],
                "seconds": time.perf_counter() - tick + shared[0],
                "cpu_seconds": time.process_time() - cpu + shared[1],
                "tokens_forwarded": scorer.tokens_forwarded - tokens + shared[2],
            }
        )
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the average ranks; NaN when either side is constant."""
    return _pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (tie-corrected); NaN when either side is constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    mx, my = _mean(x), _mean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def rank_agreement(records: Sequence[dict], key: str) -> dict[str, float | int]:
    """How well `key` orders the candidates like the true reward: over all candidates, within each
    context (mean over contexts whose rewards are not all tied), and as a ReSTEM selector (does the
    proxy's pick per context hold a best true reward; true reward of its pick vs the best and the
    mean)."""
    by_context: dict[int, list[dict]] = {}
    for r in records:
        by_context.setdefault(r["context"], []).append(r)
    within_s, within_k, hits, picked, best, mean = [], [], 0, [], [], []
    for group in by_context.values():
        rewards, proxies = [r["reward"] for r in group], [r[key] for r in group]
        if len(set(rewards)) > 1 and len(set(proxies)) > 1:
            within_s.append(spearman(proxies, rewards))
            within_k.append(kendall_tau_b(proxies, rewards))
        choice = max(group, key=lambda r: r[key])
        hits += choice["reward"] == max(rewards)
        picked.append(choice["reward"])
        best.append(max(rewards))
        mean.append(_mean(rewards))
    rewards, proxies = [r["reward"] for r in records], [r[key] for r in records]
    return {
        "candidates": len(records),
        "spearman": spearman(proxies, rewards),
        "kendall_tau_b": kendall_tau_b(proxies, rewards),
        "within_context_spearman": _mean(within_s) if within_s else math.nan,
        "within_context_kendall_tau_b": _mean(within_k) if within_k else math.nan,
        "contexts_ranked": len(within_s),
        "contexts": len(by_context),
        "pick_is_best": hits / len(by_context),
        "reward_of_pick": _mean(picked),
        "reward_of_best": _mean(best),
        "reward_of_random": _mean(mean),
    }


def inner_cost_per_candidate(updates: Sequence[dict]) -> dict[tuple[int, int], dict[str, float]]:
    """Inner-loop training cost per (context, sample), summed over its inner seeds, from a ReSTEM
    round's updates.jsonl (keys c<context>-s<sample>-i<seed>): wall seconds and train tokens
    (QA grading of the adapted model is not included, so the true reward costs more than this)."""
    out: dict[tuple[int, int], dict[str, float]] = {}
    for u in updates:
        context, sample, _ = u["key"].split("-")
        cost = out.setdefault((int(context[1:]), int(sample[1:])), {"seconds": 0.0, "train_tokens": 0})
        cost["seconds"] += u.get("seconds") or 0.0
        cost["train_tokens"] += u.get("train_tokens") or 0
    return out


def compare_rewards(summaries: Sequence[dict]) -> str:
    """Markdown comparing ReSTEM runs that differ only in `restem.reward` (stage=restem summaries):
    what scoring a round cost, the held-out accuracy each round's policy reached, and, for a proxy
    and an inner run of the same seed, the proxy's rank agreement with the true reward on round 0's
    candidates (identical self-edits, since both sample from the same starting policy and seeds;
    pairs whose texts differ are counted and left out)."""
    by_reward = by_choice(summaries, "reward", baseline="inner")
    inner = by_reward.get("inner")
    lines = [
        "| reward | scoring s (round 0) | s per candidate | speed-up | held-out self-edit accuracy by round "
        "(macro ± SE) | chosen per round | total s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in by_reward.items():
        trained = [r for r in s["rounds"] if "reward_seconds" in r]
        first = trained[0] if trained else {}
        seconds, count = first.get("reward_seconds"), first.get("rewards", {}).get("count")
        speedup = (
            f"{inner['rounds'][0]['reward_seconds'] / seconds:.1f}x"
            if inner and seconds and "reward_seconds" in inner["rounds"][0]
            else "–"
        )
        heldout = " -> ".join(
            f"{100 * r['heldout']['selfedit']['macro_accuracy']:.1f} ± {100 * r['heldout']['selfedit']['se']:.1f}"
            for r in s["rounds"]
        )
        lines.append(
            f"| {name} | {'–' if seconds is None else f'{seconds:.1f}'} "
            f"| {'–' if not seconds or not count else f'{seconds / count:.2f}'} | {speedup} | {heldout} "
            f"| {' / '.join(str(r.get('chosen', '–')) for r in trained)} | {s['total_s']:.0f} |"
        )
    proxy = by_reward.get("proxy")
    if inner and proxy:
        lines += ["", _agreement_line(Path(inner["run_dir"]), Path(proxy["run_dir"]))]
    lines += [
        "",
        "scoring s = seconds to score round 0's candidates (inner: inner updates + graded QA; proxy: "
        "forward passes), sampling excluded; round r's accuracy is the round-r policy's own self-edit "
        "applied to the held-out passages.",
    ]
    return "\n".join(lines)


def _agreement_line(inner_dir: Path, proxy_dir: Path) -> str:
    true = {
        (c["context"], c["sample"]): c
        for c in json.loads((inner_dir / "round_0" / "rewards.json").read_text())
    }
    joined, differ = [], 0
    for c in json.loads((proxy_dir / "round_0" / "rewards.json").read_text()):
        twin = true.get((c["context"], c["sample"]))
        if twin is None or twin["completion"] != c["completion"]:
            differ += 1
            continue
        joined.append({"context": c["context"], "reward": twin["reward"], "proxy_gain": c["reward"]})
    if not joined:
        return f"rank agreement: no round-0 candidate shared by both runs ({differ} differ)"
    a = rank_agreement(joined, "proxy_gain")
    return (
        f"rank agreement on {a['candidates']} shared round-0 candidates ({differ} differ): Spearman "
        f"{a['spearman']:.3f}, Kendall tau-b {a['kendall_tau_b']:.3f}, within-context Spearman "
        f"{a['within_context_spearman']:.3f} over {a['contexts_ranked']} contexts; the proxy's pick holds "
        f"a best true reward in {a['pick_is_best']:.0%} of {a['contexts']} contexts (true reward of its "
        f"pick {a['reward_of_pick']:.3f} vs best {a['reward_of_best']:.3f} vs random {a['reward_of_random']:.3f})"
    )
