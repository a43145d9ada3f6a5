"""Confidence intervals a reader can trust: percentile bootstrap over the unit that was sampled.

Accuracies here are means over articles (each article's accuracy is itself a mean over its questions
and, where several self-edits were drawn, over those), so articles are resampled. Two conditions
measured on the same articles are compared *paired*: the per-article differences are resampled,
which removes the between-article spread that dominates an unpaired comparison. A difference whose
interval contains 0 is reported as "within noise".
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000


def bootstrap_mean_ci(
    values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its percentile-bootstrap interval."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = x[np.random.default_rng(seed).integers(0, x.size, (resamples, x.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(x.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


@dataclass(frozen=True)
class Difference:
    """A paired difference `a - b` over `n` shared units, with its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def within_noise(self) -> bool:
        return not (self.low > 0 or self.high < 0)

    def describe(self) -> str:
        """In accuracy points: '+11.2 pts [−1.2, +22.5], 16 articles (within noise)'."""
        noise = " (within noise)" if self.within_noise else ""
        return (
            f"{100 * self.mean:+.1f} pts [{100 * self.low:+.1f}, {100 * self.high:+.1f}], "
            f"{self.n} articles{noise}"
        )

    def as_dict(self) -> dict:
        return {
            "mean": self.mean,
            "ci_low": self.low,
            "ci_high": self.high,
            "n": self.n,
            "within_noise": self.within_noise,
        }


def paired_difference(
    a: Mapping[Hashable, float], b: Mapping[Hashable, float], level: float = LEVEL, seed: int = 0
) -> Difference:
    """`a - b` over the keys both measured (a unit missing on one side, e.g. a failed update, is left
    out of both, so the two means cover the same units)."""
    shared = sorted(set(a) & set(b), key=str)
    mean, low, high = bootstrap_mean_ci([a[k] - b[k] for k in shared], level, seed=seed)
    return Difference(mean, low, high, len(shared))


def describe_accuracy(values: Sequence[float]) -> str:
    """'32.5% [25.0, 40.0]' for per-unit accuracies."""
    mean, low, high = bootstrap_mean_ci(values)
    return f"{100 * mean:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
