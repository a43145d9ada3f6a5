"""Collect a Hydra multirun into Markdown tables laid out like the paper's.

    python scripts/make_table.py outputs/multirun/<experiment>/<date>/<time> [--out table.md]

Every job dir (one holding `.hydra/overrides.yaml`) is one row, labelled by the values of the overrides
that differ between the jobs of its table (`selfedit_prompt=rewrite` -> "rewrite"); overrides shared by
all of them are printed once above the table instead, since they distinguish nothing. One table per
stage found in the jobs' summary.json:

- evaluate: one column per condition (its label), "acc% ± SE" of the macro accuracy over articles
  (the paper's single-passage table);
- restem: "round 0", "round 1", ... with the held-out self-edit macro accuracy ± SE per round
  (Table 10: prompt x base / iter1 / iter2).

Jobs without a summary.json (still running, crashed) are listed as incomplete beneath the tables, so a
partial sweep is never mistaken for a finished one.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

MISSING = "–"


@dataclass(frozen=True)
class Job:
    path: Path
    overrides: tuple[str, ...]
    summary: dict | None  # None: no (readable) summary.json yet
    problem: str = ""


def find_job_dirs(root: Path) -> list[Path]:
    """Hydra writes `.hydra/overrides.yaml` into every job dir; searching for it (not for summary.json)
    also finds jobs that never finished, and skips restem's per-round eval/round_*/summary.json."""
    found = {p.parent.parent for p in root.rglob("overrides.yaml") if p.parent.name == ".hydra"}
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Hydra numbers jobs 0, 1, ..., 10: order them numerically, not as strings ("10" < "2")."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in path.parts]


def read_job(path: Path) -> Job:
    """Load one job's overrides and summary; an unreadable summary makes the job incomplete, not fatal."""
    overrides = tuple(str(o) for o in yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or [])
    file = path / "summary.json"
    if not file.is_file():
        return Job(path, overrides, None, "no summary.json")
    try:
        return Job(path, overrides, json.loads(file.read_text()))
    except json.JSONDecodeError as exc:
        return Job(path, overrides, None, f"unreadable summary.json ({exc.msg})")


def split_override(override: str) -> tuple[str, str]:
    """ "+group=choice" -> ("group", "choice"); a deletion "~key" keeps its whole text as the value."""
    key, sep, value = override.lstrip("+~").partition("=")
    return (key, value.strip("'\"")) if sep else (override, override)


def row_labels(jobs: list[Job]) -> tuple[str, dict[Path, str], list[str]]:
    """Label rows by the overrides that vary across `jobs`; return (header, labels, shared overrides)."""
    parsed = {job.path: dict(split_override(o) for o in job.overrides) for job in jobs}
    keys = list(dict.fromkeys(k for overrides in parsed.values() for k in overrides))
    varying = [k for k in keys if len({overrides.get(k) for overrides in parsed.values()}) > 1]
    shown = varying or keys  # a single job (or identical jobs): show everything rather than nothing
    labels = {p: ", ".join(o.get(k, MISSING) for k in shown) or "(no overrides)" for p, o in parsed.items()}
    shared = [o for o in jobs[0].overrides if split_override(o)[0] not in shown]
    return ", ".join(shown) or "job", labels, shared


def cell(result: dict | None) -> str:
    """Macro accuracy in percent with its standard error over articles, one decimal, as in the paper."""
    if not result or result.get("macro_accuracy") is None:
        return MISSING
    se = result.get("se")
    se_text = "" if se is None else f" ± {100 * se:.1f}"
    return f"{100 * result['macro_accuracy']:.1f}%{se_text}"


def evaluate_columns(summary: dict) -> dict[str, str]:
    """Condition label -> cell, in the order the run listed its conditions."""
    return {c["label"]: cell(c) for c in summary.get("conditions", {}).values()}


def restem_columns(summary: dict) -> dict[str, str]:
    """ "round r" -> held-out accuracy with self-edits from the round-r policy (round 0 = base model)."""
    return {
        f"round {r['round']}": cell(r.get("heldout", {}).get("selfedit")) for r in summary.get("rounds", [])
    }


COLUMNS = {"evaluate": evaluate_columns, "restem": restem_columns}
CAPTIONS = {
    "evaluate": "Accuracy per condition (macro over articles, % ± SE)",
    "restem": "Held-out accuracy with self-edits per ReSTEM round (macro over articles, % ± SE)",
}


def markdown_table(stage: str, jobs: list[Job]) -> str:
    """One stage's table: rows sorted by label, columns the union over jobs in first-seen order."""
    header, labels, shared = row_labels(jobs)
    rows = sorted(((labels[j.path], COLUMNS[stage](j.summary)) for j in jobs), key=lambda r: r[0])
    columns = list(dict.fromkeys(c for _, cells in rows for c in cells))
    lines = [f"**{stage}**: {CAPTIONS[stage]}"]
    if shared:
        lines.append(f"common overrides: {' '.join(shared)}")
    lines += ["", "| " + " | ".join([header, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [
        "| " + " | ".join([label, *(cells.get(c, MISSING) for c in columns)]) + " |" for label, cells in rows
    ]
    return "\n".join(lines)


def render(root: Path, jobs: list[Job]) -> str:
    """All stage tables, then the jobs that cannot be tabulated (incomplete or of an unknown stage)."""
    done = [j for j in jobs if j.summary is not None and j.summary.get("stage") in COLUMNS]
    stages = list(dict.fromkeys(j.summary["stage"] for j in done))
    blocks = [markdown_table(s, [j for j in done if j.summary["stage"] == s]) for s in stages]
    left = [j for j in jobs if j not in done]
    if left:
        lines = [f"incomplete ({len(left)} of {len(jobs)} jobs):"]
        for j in left:
            why = j.problem or f"stage {j.summary.get('stage')!r} has no table layout"
            lines.append(f"- {j.path.relative_to(root)}: {' '.join(j.overrides) or '(no overrides)'} ({why})")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Markdown tables (paper layout) from a Hydra multirun dir.")
    parser.add_argument("multirun_dir", type=Path, help="e.g. outputs/multirun/<experiment>/<date>/<time>")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.multirun_dir
    job_dirs = find_job_dirs(root) if root.is_dir() else []
    if not job_dirs:
        print(f"error: {root}: no job dirs (no .hydra/overrides.yaml below it)", file=sys.stderr)
        return 2
    text = render(root, [read_job(p) for p in job_dirs])
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
