"""What a ReSTEM run shows a reader: paired comparisons between rounds and Table 2 rows, each with a
bootstrap 95% CI over held-out articles, and the pictures (round curve, Table 2 bars).

Input is the `rounds` list of stage=restem's summary: per round the held-out evaluation
(`heldout[condition]` accuracy summaries with `per_article` accuracies), and for trained rounds the
reward statistics. Every comparison is paired over the articles both sides measured.
"""

from __future__ import annotations

from pathlib import Path

from seal_runner.choices import Reward
from seal_runner.stats import paired_difference

# Rewards that are accuracies (fractions), plotted in %; the others are log-likelihood gains.
ACCURACY_REWARDS = (Reward.inner, Reward.solved)


def _per_article(round_record: dict, condition: str, metric: str = "accuracy") -> dict[int, float] | None:
    """Per-article values of a held-out condition: accuracy, or (`metric="answer_logprob"`) the
    mean gold-answer log-probability per token; None when that round did not measure it."""
    h = round_record["heldout"]
    if metric == "accuracy":
        values = h.get("per_article", {}).get(condition)
    else:
        values = h.get(metric, {}).get(condition, {}).get("per_article")
    # JSON turns the article keys into strings; compare on ints either way.
    return None if values is None else {int(k): v for k, v in values.items()}


def comparisons(rounds: list[dict], metric: str = "accuracy") -> dict[str, dict]:
    """Named paired differences (a - b) of a held-out metric: each later round's self-edit row
    against round 0's, each round's self-edits against the passage alone, and (accuracy) the noise
    floor (two self-edit samples of the round-0 policy) when it was measured."""
    out = {}
    first = rounds[0]
    start = _per_article(first, "selfedit", metric)
    if start is None:
        return out

    def add(name: str, a: dict | None, b: dict | None) -> None:
        if a is not None and b is not None:  # a round that did not measure the metric is left out
            out[name] = paired_difference(a, b).as_dict()

    for record in rounds[1:]:
        add(f"round_{record['round']}_vs_round_0", _per_article(record, "selfedit", metric), start)
    base_passage = _per_article(first, "passage", metric)
    if base_passage is not None:
        for record in rounds:
            add(
                f"round_{record['round']}_selfedit_vs_base_passage",
                _per_article(record, "selfedit", metric),
                base_passage,
            )
        if len(rounds) > 1:
            add(
                "final_selfedit_vs_own_passage",
                _per_article(rounds[-1], "selfedit", metric),
                _per_article(rounds[-1], "passage", metric),
            )
    if metric == "accuracy" and "noise_floor" in first["heldout"]:
        out["noise_floor"] = first["heldout"]["noise_floor"]
    return out


def table2_rows(rounds: list[dict]) -> list[dict]:
    """The paper's Table 2 from one run: base, passage, base-model self-edits, final policy."""
    first, last = rounds[0], rounds[-1]
    rows = [{"row": "base model (no update)", **first["heldout"]["base"]}]
    if "passage" in first["heldout"]:
        rows.append({"row": "train on passage", **first["heldout"]["passage"]})
    rows.append({"row": "passage + base-model self-edit", **first["heldout"]["selfedit"]})
    if len(rounds) > 1:
        learner = ", base model updated" if fixed_learner(rounds) else ""
        rows.append(
            {
                "row": f"passage + self-edit (policy after round {last['round']}{learner})",
                **last["heldout"]["selfedit"],
            }
        )
    return rows


def fixed_learner(rounds: list[dict]) -> bool:
    """Whether a later round's self-edits trained another model than the policy that wrote them
    (`restem.learner=base`)."""
    return any(r.get("learner", r.get("policy")) != r.get("policy") for r in rounds)


def plot_round_curve(summary: dict, path: Path) -> Path:
    """Panels per round: held-out accuracy (self-edit with 95% CI, no update, passage alone), the
    same rows' gold-answer log-likelihood when measured (`restem.heldout_likelihood`), mean and
    best-of-k training reward (in % for accuracy rewards, in nats per answer token for likelihood
    gains), and mean self-edit length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = summary["rounds"]
    x = [r["round"] for r in rounds]
    likelihood = all("answer_logprob" in r["heldout"] for r in rounds)
    fig, axes = plt.subplots(1, 4 if likelihood else 3, figsize=(17 if likelihood else 13, 3.8))
    acc, reward, length = axes[0], axes[-2], axes[-1]
    _condition_curves(acc, x, [r["heldout"] for r in rounds], "macro_accuracy", 100)
    acc.set(xlabel="policy after round", ylabel="held-out accuracy (%)", title="held-out accuracy (95% CI)")
    if likelihood:
        _condition_curves(axes[1], x, [r["heldout"]["answer_logprob"] for r in rounds], "mean_logprob", 1)
        axes[1].set(
            xlabel="policy after round",
            ylabel="log-prob per answer token",
            title="held-out gold-answer log-likelihood (95% CI)",
        )
    trained = [r for r in rounds if r.get("rewards")]
    percent = all(r["reward"] in ACCURACY_REWARDS for r in trained)
    for key, style in (("mean_reward", "o-"), ("mean_best_of_k", "s--"), ("mean_baseline", "^:")):
        values = [r["rewards"].get(key) for r in trained]
        if trained and all(v is not None for v in values):
            scale = 100 if percent else 1
            reward.plot([r["round"] for r in trained], [scale * v for v in values], style, label=key)
    reward.set(
        xlabel="round",
        ylabel="reward (%)" if percent else "reward (gain, nats per answer token)",
        title="training reward",
    )
    if trained:
        reward.legend()
    length.plot(x, [r["heldout"]["mean_selfedit_tokens"] for r in rounds], "o-")
    length.set(xlabel="policy after round", ylabel="tokens", title="held-out self-edit length")
    for ax in axes:
        ax.set_xticks(x if ax is not reward else [r["round"] for r in trained] or x)
    fig.suptitle(f"{summary['experiment']}: {summary['heldout_articles']} held-out articles")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _condition_curves(ax, x: list[int], heldouts: list[dict], value: str, scale: float) -> None:
    """One line per held-out condition measured in every round, with its 95% CI as error bars."""
    for condition, style in (("selfedit", "o-"), ("passage", "s--"), ("base", "^:")):
        cells = [h.get(condition) for h in heldouts]
        if any(c is None for c in cells):
            continue
        means = [scale * c[value] for c in cells]
        errors = [
            [m - scale * c.get("ci_low", c[value]) for m, c in zip(means, cells, strict=True)],
            [scale * c.get("ci_high", c[value]) - m for m, c in zip(means, cells, strict=True)],
        ]
        ax.errorbar(x, means, yerr=errors, fmt=style, capsize=4, label=condition)
    ax.legend()


def plot_table2(
    rows: list[dict],
    path: Path,
    title: str,
    value: str = "macro_accuracy",
    xlabel: str = "no-context QA accuracy (%), 95% CI over articles",
) -> Path:
    """Table rows as bars with their 95% CIs: any labelled rates (`row`, the fraction under `value`,
    optional `ci_low`/`ci_high`) draw the same way: Table 2 from stage=restem and stage=evaluate,
    ARC's Table 1 (`value="success_rate"`), one bar per sweep job (scripts/make_table.py --plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * len(rows)))
    means = [100 * r[value] for r in rows]
    errors = [
        [m - 100 * r.get("ci_low", r[value]) for m, r in zip(means, rows, strict=True)],
        [100 * r.get("ci_high", r[value]) - m for m, r in zip(means, rows, strict=True)],
    ]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, means, xerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_yticks(y, [r["row"] for r in rows])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def difference_line(name: str, diff: dict, scale: float, digits: int, unit: str) -> str:
    """`  name  +1.0 pts [-2.0, +4.0], 20 articles (within noise)`: a paired difference, scaled."""
    noise = " (within noise)" if diff["within_noise"] else ""
    mean, low, high = (scale * diff[k] for k in ("mean", "ci_low", "ci_high"))
    return f"  {name:<38} {mean:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}], {diff['n']} articles{noise}"
