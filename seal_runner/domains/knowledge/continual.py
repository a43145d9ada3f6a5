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
