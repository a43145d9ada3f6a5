"""Collect a Hydra multirun into Markdown tables laid out like the paper's.

    python scripts/make_table.py outputs/multirun/<experiment>/<date>/<time> [--out table.md] [--plot]

Every job dir (one holding `.hydra/overrides.yaml`) is one row, labelled by the values of the overrides
that differ between the jobs of its table (`selfedit_prompt=rewrite` -> "rewrite"); overrides shared by
all of them are printed once above the table instead, since they distinguish nothing. One table per
stage found in the jobs' summary.json (stage=evaluate: one per domain table):

- evaluate: one column per condition (its label), "acc% ± SE" of the macro accuracy over articles
  (the paper's single-passage table);
- table1 (stage=evaluate on ARC): one column per Table 1 method, "success% [95% CI]" over tasks;
- restem: "round 0", "round 1", ... with the held-out self-edit macro accuracy ± SE per round
  (Table 10: prompt x base / iter1 / iter2).

Jobs without a summary.json (still running, crashed) are listed as incomplete beneath the tables, so a
partial sweep is never mistaken for a finished one.

`--plot` also draws each table as a PNG beside the table output (`<out stem>_<table>.png`, or
`<multirun dir>/table_<table>.png` without --out): one bar per job of its headline (evaluate:
the last condition it listed; table1: SEAL, else its last condition; restem: its last round's held-out
self-edit accuracy), with the 95% CI where the job's summary has one (restem's, evaluate's and table1's
do), in the same row order as the table.
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


def rate_cell(result: dict) -> str:
    """A Table 1 success rate in percent with its bootstrap 95% CI over tasks."""
    return (
        f"{100 * result['success_rate']:.1f}% [{100 * result['ci_low']:.1f}, {100 * result['ci_high']:.1f}]"
    )


def evaluate_columns(summary: dict) -> dict[str, str]:
    """Condition label -> cell, in the order the run listed its conditions."""
    return {c["label"]: cell(c) for c in summary.get("conditions", {}).values()}


def restem_columns(summary: dict) -> dict[str, str]:
    """ "round r" -> held-out accuracy with self-edits from the round-r policy (round 0 = base model)."""
    return {
        f"round {r['round']}": cell(r.get("heldout", {}).get("selfedit")) for r in summary.get("rounds", [])
    }


def table1_columns(summary: dict) -> dict[str, str]:
    """ARC method (its Table 1 label) -> success rate cell, in the paper's row order."""
    return {c.get("label", key): rate_cell(c) for key, c in summary.get("conditions", {}).items()}


COLUMNS = {"evaluate": evaluate_columns, "table1": table1_columns, "restem": restem_columns}


def evaluate_headline(summary: dict) -> tuple[str, dict | None]:
    """The last condition the run listed: a Table 2 run lists its baselines first, its treatment last."""
    conditions = list(summary.get("conditions", {}).values())
    return (conditions[-1]["label"], conditions[-1]) if conditions else ("", None)


def restem_headline(summary: dict) -> tuple[str, dict | None]:
    """Held-out self-edit accuracy of the last policy the run evaluated: what its rounds of training gave."""
    rounds = summary.get("rounds", [])
    if not rounds:
        return "", None
    return f"round {rounds[-1]['round']} policy's self-edits", rounds[-1].get("heldout", {}).get("selfedit")


def table1_headline(summary: dict) -> tuple[str, dict | None]:
    """SEAL's success rate when the run has it, else the last condition's."""
    conditions = summary.get("conditions", {})
    key = "seal" if "seal" in conditions else next(reversed(conditions), None)
    return (conditions[key].get("label", key), conditions[key]) if key else ("", None)


HEADLINES = {"evaluate": evaluate_headline, "table1": table1_headline, "restem": restem_headline}
# what a job's bar shows: its headline's key, and the x axis
VALUES = {
    "evaluate": ("macro_accuracy", "no-context QA accuracy (%), 95% CI over articles"),
    "table1": ("success_rate", "success rate over (task, self-edit) pairs (%), 95% CI over tasks"),
    "restem": ("macro_accuracy", "no-context QA accuracy (%), 95% CI over articles"),
}
CAPTIONS = {
    "evaluate": "Accuracy per condition (macro over articles, % ± SE)",
    "table1": "Few-shot ARC success rate per method (% of (task, self-edit) pairs [95% CI over tasks])",
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


def table_of(summary: dict) -> str | None:
    """The table a job goes into: its stage, but ARC's Table 1 runs (`table: table1`, or the former
    `stage: arc`, whose conditions carry no label) their own."""
    arc = summary.get("table") == "table1" or summary.get("stage") == "arc"
    return "table1" if arc else summary.get("stage")


def by_stage(jobs: list[Job]) -> dict[str, list[Job]]:
    """The jobs that can be tabulated, grouped by table in first-seen order."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        table = table_of(job.summary) if job.summary is not None else None
        if table in COLUMNS:
            groups.setdefault(table, []).append(job)
    return groups


def render(root: Path, jobs: list[Job]) -> str:
    """All stage tables, then the jobs that cannot be tabulated (incomplete or of an unknown stage)."""
    groups = by_stage(jobs)
    blocks = [markdown_table(stage, stage_jobs) for stage, stage_jobs in groups.items()]
    done = [j for stage_jobs in groups.values() for j in stage_jobs]
    left = [j for j in jobs if j not in done]
    if left:
        lines = [f"incomplete ({len(left)} of {len(jobs)} jobs):"]
        for j in left:
            why = j.problem or f"stage {j.summary.get('stage')!r} has no table layout"
            lines.append(f"- {j.path.relative_to(root)}: {' '.join(j.overrides) or '(no overrides)'} ({why})")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_plots(jobs: list[Job], stem: Path) -> list[Path]:
    """One PNG per stage table (`<stem>_<stage>.png`): a bar per job with a headline accuracy, labelled as
    its table row; what the accuracy is goes in the title when all bars share it, else on each bar."""
    # Imported here: the tables need neither matplotlib nor the package, so plain tabulating stays light.
    from seal_runner.domains.knowledge.report import plot_table2

    paths = []
    for stage, stage_jobs in by_stage(jobs).items():
        header, labels, _ = row_labels(stage_jobs)
        bars = []
        value, xlabel = VALUES[stage]
        for job in stage_jobs:
            what, result = HEADLINES[stage](job.summary)
            if result and result.get(value) is not None:
                bars.append((labels[job.path], what, result))
        if not bars:
            continue
        bars.sort(key=lambda bar: bar[0])
        shared = len({what for _, what, _ in bars}) == 1
        rows = [{**result, "row": label if shared else f"{label}: {what}"} for label, what, result in bars]
        title = f"{stage} jobs by {header}" + (f": {bars[0][1]}" if shared else "")
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths.append(plot_table2(rows, stem.with_name(f"{stem.name}_{stage}.png"), title, value, xlabel))
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Markdown tables (paper layout) from a Hydra multirun dir.")
    parser.add_argument("multirun_dir", type=Path, help="e.g. outputs/multirun/<experiment>/<date>/<time>")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    parser.add_argument(
        "--plot", action="store_true", help="also draw each table as a bar chart with CIs, beside the table"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.multirun_dir
    job_dirs = find_job_dirs(root) if root.is_dir() else []
    if not job_dirs:
        print(f"error: {root}: no job dirs (no .hydra/overrides.yaml below it)", file=sys.stderr)
        return 2
    jobs = [read_job(p) for p in job_dirs]
    text = render(root, jobs)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    if args.plot:
        stem = args.out.with_suffix("") if args.out is not None else root / "table"
        paths = write_plots(jobs, stem)
        for path in paths:
            print(f"plot: {path}")
        if not paths:
            print("plot: nothing to draw (no finished job has an accuracy)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
