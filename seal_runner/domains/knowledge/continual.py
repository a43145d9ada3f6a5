"""The forgetting matrix of sequential self-edits (the paper's Figure 6).

Row 0 holds the untouched model's accuracy on each passage of a sequence; row t (t >= 1) the
accuracy on passages 1..t after t self-edit updates, each merged before the next. Cells above the
diagonal of rows >= 1 are undefined (passage not seen yet) and stored as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from seal_runner.sweeps import by_choice


def empty_matrix(length: int) -> list[list[float]]:
    return [[math.nan] * length for _ in range(length + 1)]


def mean_matrix(matrices: Sequence[list[list[float]]]) -> list[list[float]]:
    """Cell-wise mean over sequences, ignoring NaN (a cell missing in every sequence stays NaN)."""
    rows, cols = len(matrices[0]), len(matrices[0][0])
    out = empty_matrix(cols)
    for i in range(rows):
        for j in range(cols):
            values = [m[i][j] for m in matrices if not math.isnan(m[i][j])]
            out[i][j] = sum(values) / len(values) if values else math.nan
    return out


def std_matrix(matrices: Sequence[list[list[float]]]) -> list[list[float]]:
    """Cell-wise sample standard deviation (ddof 1, as the reference's `statistics.stdev`) over
    matrices, ignoring NaN; NaN where fewer than two values exist."""
    rows, cols = len(matrices[0]), len(matrices[0][0])
    out = empty_matrix(cols)
    for i in range(rows):
        for j in range(cols):
            out[i][j] = _mean_std([m[i][j] for m in matrices])[1]
    return out


def combine_runs(means: Sequence[list[list[float]]], stds: Sequence[list[list[float]]]) -> dict:
    """The reference's aggregation of its runs (knowledge-incorporation/src/continual/
    average_results.py, main): the cell-wise mean of the runs' mean matrices (the mean over all
    sequences when runs hold equally many) and, as its `std_over_sequences`, the mean of the runs'
    standard deviations over their sequences. `std_across_runs` adds the run-to-run spread of the
    runs' means, which the reference does not report."""
    return {
        "mean": mean_matrix(means),
        "std_over_sequences": mean_matrix(stds),
        "std_across_runs": std_matrix(means),
    }


def stats_across_runs(per_run: Sequence[dict]) -> dict[str, dict]:
    """Mean and sample std over runs of each `forgetting_stats` entry (lists element-wise)."""
    out = {}
    for key, first in per_run[0].items():
        if isinstance(first, list):
            pairs = [_mean_std([s[key][i] for s in per_run]) for i in range(len(first))]
            out[key] = {"mean": [m for m, _ in pairs], "std": [sd for _, sd in pairs]}
        else:
            mean, std = _mean_std([s[key] for s in per_run])
            out[key] = {"mean": mean, "std": std}
    return out


def forgetting_stats(matrix: list[list[float]]) -> dict[str, float | list[float]]:
    """The numbers the paper quotes: mean over seen passages per step, the diagonal (accuracy on the
    newest passage right after its update), and retention of passage 1 after the last step."""
    steps = len(matrix) - 1
    seen = [_mean(matrix[t][:t]) for t in range(1, steps + 1)]
    diagonal = [matrix[t][t - 1] for t in range(1, steps + 1)]
    return {
        "untouched_mean": _mean(matrix[0]),
        "mean_seen_by_step": seen,
        "diagonal_mean": _mean(diagonal),
        "first_passage_after_update": matrix[1][0],
        "first_passage_after_last_step": matrix[steps][0],
        "final_mean_seen": seen[-1],
        "newest_after_last_step": diagonal[-1],
        # How much of passage 1's post-update accuracy is gone by the end (0 = none forgotten).
        "forgetting_first_passage": matrix[1][0] - matrix[steps][0],
        "mean_forgetting": _mean([max(matrix[j + 1][j] - matrix[steps][j], 0.0) for j in range(steps - 1)]),
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1) of the non-NaN values; NaN where too few values exist."""
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return math.nan, math.nan
    mean = sum(kept) / len(kept)
    if len(kept) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - 1))


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def plot_heatmap(matrix: list[list[float]], path: Path, title: str) -> Path:
    """Rows = steps (0 = untouched), columns = passages; NaN cells left blank, values annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * data.shape[1], 1 + 0.7 * data.shape[0]))
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(data):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k")
    ax.set_xticks(range(data.shape[1]), [str(j + 1) for j in range(data.shape[1])])
    ax.set_yticks(range(data.shape[0]), [str(i) for i in range(data.shape[0])])
    ax.set_xlabel("passage")
    ax.set_ylabel("self-edit updates applied")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_table(summaries: Sequence[dict]) -> str:
    """Markdown comparing `continual.strategy` runs (stage=continual summary.json dicts): the
    issue's headline numbers per strategy, forgetting relative to `merge` (the paper's protocol),
    what the inner updates cost, and each strategy's mean matrix beneath."""
    by_name = by_choice(summaries, "strategy", baseline="merge")
    baseline = by_name.get("merge")
    lines = [
        "| strategy | mean seen (last step) | passage 1: after its update -> last step | newest (last step) "
        "| diagonal mean | forgetting | vs merge | seconds | inner steps | train tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in by_name.items():
        st, cost = s["stats"], s["cost"]
        lines.append(
            f"| {name} | {st['final_mean_seen']:.3f} | {st['first_passage_after_update']:.3f} -> "
            f"{st['first_passage_after_last_step']:.3f} | {st['newest_after_last_step']:.3f} "
            f"| {st['diagonal_mean']:.3f} | {st['mean_forgetting']:.3f} "
            f"| {_relative_reduction(st, baseline)} | {s['total_s']:.0f} | {cost['inner_steps']} "
            f"| {cost['train_tokens']} |"
        )
    lines += [
        "",
        "forgetting = mean over passages 1..T-1 of max(accuracy right after its update - accuracy after "
        "the last step, 0); vs merge = relative reduction of that against merge (positive = less forgetting). "
        "A reduction only counts at equal newest-passage accuracy (diagonal mean): a strategy that learns "
        "less also has less to forget.",
    ]
    heatmaps = [f"{name}: {s['heatmap']}" for name, s in by_name.items() if s.get("heatmap")]
    if heatmaps:
        lines += ["", "heatmaps: " + ", ".join(heatmaps)]
    for name, s in by_name.items():
        m = s["matrix"]
        lines += [
            "",
            f"{name}: mean matrix over {s['sequences']} sequences (row t = after t self-edits)",
            "",
            "| step | " + " | ".join(f"p{j + 1}" for j in range(len(m[0]))) + " |",
            "|---" * (len(m[0]) + 1) + "|",
        ]
        for t, row in enumerate(m):
            lines.append(f"| {t} | " + " | ".join("" if math.isnan(v) else f"{v:.2f}" for v in row) + " |")
    return "\n".join(lines)


def _relative_reduction(stats: dict, baseline: dict | None) -> str:
    if baseline is None:
        return "–"
    reference = baseline["stats"]["mean_forgetting"]
    if math.isnan(reference) or reference <= 0:
        return "– (merge forgot nothing)"
    return f"{100 * (1 - stats['mean_forgetting'] / reference):+.0f}%"
