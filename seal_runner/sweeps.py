"""One table per multirun: collect the jobs' summary.json files and render their comparison.

`ComparisonTable` is a Hydra callback: a preset that sweeps one choice (continual.strategy,
restem.reward) names it under `hydra.callbacks`, and when the last job ends the launching process
writes `<sweep dir>/comparison.md` and prints it. Jobs still running or crashed (no summary of the
expected stage) are named beneath the table, so a partial sweep is never read as a finished one.
`scripts/sweep_table.py` renders the same table by hand (a SLURM sweep, a sweep killed halfway).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_method

log = logging.getLogger(__name__)


def collect_summaries(roots: Iterable[Path], stage: str) -> tuple[list[dict], list[str]]:
    """Finished summaries of `stage` under run or sweep dirs, and the job dirs without one."""
    jobs = sorted({p.parent.parent for root in roots for p in Path(root).rglob(".hydra/overrides.yaml")})
    summaries, incomplete = [], []
    for job in jobs:
        file = job / "summary.json"
        summary = json.loads(file.read_text()) if file.is_file() else None
        if summary is None or summary.get("stage") != stage:
            incomplete.append(str(job))
        else:
            summaries.append(summary)
    return summaries, incomplete


def by_choice(summaries: Iterable[dict], key: str, baseline: str) -> dict[str, dict]:
    """A sweep's summaries keyed by the swept choice (`summary[key]`), the baseline first; two jobs
    with the same choice make the comparison ambiguous and raise."""
    summaries = list(summaries)
    out = {s[key]: s for s in sorted(summaries, key=lambda s: s[key] != baseline)}
    if len(out) != len(summaries):
        raise ValueError(f"two runs share a {key}: {[s[key] for s in summaries]}")
    return out


def comparison_text(roots: Iterable[Path], stage: str, render: Callable[[list[dict]], str]) -> str:
    roots = list(roots)
    summaries, incomplete = collect_summaries(roots, stage)
    if not summaries:
        raise ValueError(f"no finished stage={stage} run under {[str(r) for r in roots]}")
    text = render(summaries)
    if incomplete:
        text += f"\n\nincomplete (no {stage} summary.json): " + ", ".join(incomplete)
    return text


class ComparisonTable(Callback):
    """After a multirun, `render` (a dotted function: summaries -> Markdown) over its jobs."""

    def __init__(self, stage: str, render: str, filename: str = "comparison.md") -> None:
        self.stage, self.render, self.filename = stage, get_method(render), filename

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            text = comparison_text([sweep_dir], self.stage, self.render)
        except ValueError as exc:
            log.warning("no comparison table: %s", exc)
            return
        (sweep_dir / self.filename).write_text(text + "\n")
        print(f"\n{text}\n\nwritten to {sweep_dir / self.filename}")
