"""The forgetting comparison of `continual.strategy` runs as Markdown.

    python scripts/continual_table.py outputs/multirun/continual_compare/<date>/<time> [--out table.md]

Every stage=continual summary.json under the given dirs is one strategy; a job without one (still
running, crashed) is named beneath the table so a partial sweep is never read as a finished one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seal_runner.domains.knowledge.continual import compare_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="run dirs or a multirun dir")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    jobs = sorted({p.parent.parent for root in args.roots for p in root.rglob(".hydra/overrides.yaml")})
    summaries, incomplete = [], []
    for job in jobs:
        file = job / "summary.json"
        summary = json.loads(file.read_text()) if file.is_file() else None
        if summary is None or summary.get("stage") != "continual":
            incomplete.append(str(job))
        else:
            summaries.append(summary)
    if not summaries:
        raise SystemExit(f"no finished stage=continual run under {[str(r) for r in args.roots]}")
    text = compare_table(summaries)
    text += "\n\nheatmaps: " + ", ".join(f"{s['strategy']}: {s['heatmap']}" for s in summaries)
    if incomplete:
        text += "\n\nincomplete (no continual summary.json): " + ", ".join(incomplete)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
