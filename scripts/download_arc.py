"""Fetch or copy ARC-AGI tasks into the challenges/solutions JSON files `domain=arc` reads.

Sources:
  github (default)   the public ARC-AGI-1 repository's per-task files, over raw.githubusercontent.com
                     (`--base-url` points elsewhere, e.g. the ARC Prize ARC-AGI-2 repository);
  a local directory  holding arc-agi_<split>_challenges.json + _solutions.json (Kaggle layout), or
                     <split>/<id>.json / <id>.json per-task files (repository layout).
Writes <out>/arc-agi_<split>_challenges.json and _solutions.json, then loads them back with the
project's loader so a broken download fails here rather than in a run.

    python scripts/download_arc.py --split training --paper-train          # online
    python scripts/download_arc.py --source ../shared/data/arc --split training --out data/arc
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

from seal_runner.domains.arc.data import PAPER_TRAIN_TASK_IDS, load_tasks

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/fchollet/ARC-AGI/master/data"
LISTING_URL = "https://api.github.com/repos/fchollet/ARC-AGI/contents/data/{split}"
SPLITS = ("training", "evaluation")


def split_task(task_id: str, raw: dict) -> tuple[dict, list]:
    """A repository-format task ({train, test with outputs}) -> (challenge, solutions)."""
    if not isinstance(raw, dict) or "train" not in raw or "test" not in raw:
        raise ValueError(f"task {task_id}: expected an object with 'train' and 'test'")
    missing = [i for i, t in enumerate(raw["test"]) if "output" not in t]
    if missing:
        raise ValueError(f"task {task_id}: test inputs {missing} have no 'output' (no solutions to write)")
    challenge = {"train": raw["train"], "test": [{"input": t["input"]} for t in raw["test"]]}
    return challenge, [t["output"] for t in raw["test"]]


def _get_json(url: str, timeout: float = 30.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https URLs)
        return json.loads(response.read().decode())


def from_github(split: str, task_ids: list[str] | None, base_url: str) -> tuple[dict, dict]:
    if task_ids is None:
        listing = _get_json(LISTING_URL.format(split=split))
        task_ids = sorted(
            item["name"].removesuffix(".json") for item in listing if item["name"].endswith(".json")
        )
    challenges, solutions = {}, {}
    for i, task_id in enumerate(task_ids, 1):
        url = f"{base_url}/{split}/{task_id}.json"
        try:
            raw = _get_json(url)
        except OSError as err:
            raise SystemExit(f"could not fetch {url}: {err}") from err
        challenges[task_id], solutions[task_id] = split_task(task_id, raw)
        print(f"\r{split}: {i}/{len(task_ids)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return challenges, solutions


def from_local(source: Path, split: str, task_ids: list[str] | None) -> tuple[dict, dict]:
    combined = source / f"arc-agi_{split}_challenges.json"
    if combined.exists():
        challenges = json.loads(combined.read_text())
        solutions_path = source / f"arc-agi_{split}_solutions.json"
        if not solutions_path.exists():
            raise SystemExit(f"{combined} has no solutions file beside it ({solutions_path.name})")
        solutions = json.loads(solutions_path.read_text())
        ids = list(challenges) if task_ids is None else task_ids
        unknown = [t for t in ids if t not in challenges or t not in solutions]
        if unknown:
            raise SystemExit(f"{combined}: task ids {unknown} not found (with solutions)")
        return {t: challenges[t] for t in ids}, {t: solutions[t] for t in ids}
    folder = source / split if (source / split).is_dir() else source
    files = {p.stem: p for p in folder.glob("*.json")}
    if not files:
        raise SystemExit(f"{source}: neither arc-agi_{split}_challenges.json nor per-task <id>.json files")
    ids = sorted(files) if task_ids is None else task_ids
    unknown = [t for t in ids if t not in files]
    if unknown:
        raise SystemExit(f"{folder}: no files for task ids {unknown}")
    challenges, solutions = {}, {}
    for task_id in ids:
        challenges[task_id], solutions[task_id] = split_task(task_id, json.loads(files[task_id].read_text()))
    return challenges, solutions


def write_split(out: Path, split: str, challenges: dict, solutions: dict) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"arc-agi_{split}_challenges.json", out / f"arc-agi_{split}_solutions.json"
    for path, data in zip(paths, (challenges, solutions), strict=True):
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    load_tasks(*paths)  # validates every grid and solution count; raises naming the task
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", default="github", help="'github' or a local directory")
    parser.add_argument("--split", choices=SPLITS, action="append", help="repeatable; default both")
    parser.add_argument("--task-ids", nargs="+", help="only these tasks (default: all of the split)")
    parser.add_argument("--paper-train", action="store_true", help="the paper's 12 training tasks")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--out", type=Path, default=Path("data/arc"))
    args = parser.parse_args(argv)
    task_ids = list(PAPER_TRAIN_TASK_IDS) if args.paper_train else args.task_ids
    for split in args.split or list(SPLITS):
        if args.source == "github":
            challenges, solutions = from_github(split, task_ids, args.base_url.rstrip("/"))
        else:
            challenges, solutions = from_local(Path(args.source).expanduser(), split, task_ids)
        paths = write_split(args.out, split, challenges, solutions)
        print(f"{split}: {len(challenges)} tasks -> {paths[0]} + {paths[1].name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
