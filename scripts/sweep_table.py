"""A sweep's comparison table as Markdown, the one its preset's callback writes at the end.

    python scripts/sweep_table.py continual outputs/multirun/continual_compare/<date>/<time>
    python scripts/sweep_table.py reward outputs/multirun/reward_proxy_vs_true/<date>/<time>

Use it on a sweep still running, one killed halfway, or one launched without the callback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seal_runner.domains.knowledge.continual import compare_table
from seal_runner.domains.knowledge.proxy import compare_rewards
from seal_runner.sweeps import comparison_text

TABLES = {"continual": ("continual", compare_table), "reward": ("restem", compare_rewards)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("roots", nargs="+", type=Path, help="run dirs or a multirun dir")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    stage, render = TABLES[args.table]
    try:
        text = comparison_text(args.roots, stage, render)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
