"""Convert SQuAD v1.1 into the paper's article list: [{title, context, questions: [{question, answer}]}].

The paper works on passages, not Wikipedia articles: one entry per SQuAD paragraph, titled with the
article title (underscores -> spaces, as the Topic prefix of the QA prompt reads it), and each question
graded against the FIRST gold answer only. Selecting articles reuses the runner's own
`select_articles`, so a file written here is exactly what `domain.start/n_articles/shuffle_seed`
would pick at run time.

The paper's evaluation set (SQuAD v1.1 dev, shuffled with seed 42, first 200 passages, 974 questions):

    python scripts/prepare_squad.py --squad dev-v1.1.json --split validation \\
        --shuffle-seed 42 --start 0 --n 200 --out data/squad_val_eval200.json

Training articles come from the train split (e.g. `--squad train-v1.1.json --split train`). With
`--hf` instead of `--squad`, the split is loaded with `datasets.load_dataset("squad", split=...)`.
Without `--shuffle-seed` the file order is kept; `--n -1` (default) keeps everything from `--start`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seal_runner.domains.knowledge.data import DataError, parse_articles, select_articles


class SourceUnavailable(RuntimeError):
    """The Hugging Face path cannot run here (library missing or hub unreachable): say what to do instead."""


def clean_title(title: str) -> str:
    """SQuAD titles are Wikipedia page names ("Super_Bowl_50"); the QA prompt's Topic line wants words."""
    return title.replace("_", " ")


def _first_answer(answers: list[str]) -> str:
    """The paper grades against one gold string: the first annotator's answer ("" if there is none)."""
    return answers[0] if answers else ""


def _entry(title: str, context: str, qas: list[tuple[str, list[str]]]) -> dict:
    """One passage in list format. A blank question or gold cannot be asked or graded, so it is dropped
    here (and counted by `count_dropped`) instead of failing the whole split in `parse_articles`."""
    pairs = [(q, _first_answer(answers)) for q, answers in qas]
    questions = [{"question": q, "answer": a} for q, a in pairs if q.strip() and a.strip()]
    return {"title": clean_title(title), "context": context, "questions": questions, "asked": len(qas)}


def count_dropped(entries: list[dict]) -> int:
    """Questions dropped by `_entry`: reported so a silent loss of questions cannot skew the counts."""
    return sum(e["asked"] - len(e["questions"]) for e in entries)


def from_squad_json(raw: object, source: str) -> list[dict]:
    """Flatten the official nested layout (data -> paragraphs -> qas), one entry per paragraph, in file order."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DataError(f"{source}: expected the official SQuAD v1.1 layout {{'data': [...]}}")
    entries = []
    for i, article in enumerate(raw["data"]):
        try:
            for paragraph in article["paragraphs"]:
                qas = [(qa["question"], [a["text"] for a in qa["answers"]]) for qa in paragraph["qas"]]
                entries.append(_entry(article["title"], paragraph["context"], qas))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{source}: data[{i}]: not SQuAD v1.1 ({type(exc).__name__}: {exc})") from exc
    return entries


def read_squad_file(path: Path) -> list[dict]:
    """Read the official JSON, failing with the file name rather than a bare traceback."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (download dev-v1.1.json / train-v1.1.json, or use --hf)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    return from_squad_json(raw, str(path))


def from_hf_rows(rows) -> list[dict]:
    """HF `squad` has one row per question; regroup by paragraph text in first-seen order (= file order)."""
    grouped: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {}
    for row in rows:
        title, qas = grouped.setdefault(row["context"], (row["title"], []))
        qas.append((row["question"], list(row["answers"]["text"])))
    return [_entry(title, context, qas) for context, (title, qas) in grouped.items()]


def load_hf_split(split: str) -> list[dict]:
    """Load via `datasets` (optional: imported here so the --squad path never needs it)."""
    try:
        import datasets
    except ImportError as exc:
        raise SourceUnavailable(
            "--hf needs the `datasets` package, which is not installed; install it, or download the "
            "official SQuAD v1.1 JSON (dev-v1.1.json / train-v1.1.json) and pass --squad PATH"
        ) from exc
    try:
        rows = datasets.load_dataset("squad", split=split)
    except Exception as exc:  # the hub raises many types (ConnectionError, OSError, HfHubHTTPError, ...)
        raise SourceUnavailable(
            f"could not load the Hugging Face dataset 'squad' split {split!r} ({type(exc).__name__}: {exc}); "
            "if offline, pass the official SQuAD v1.1 JSON with --squad PATH"
        ) from exc
    return from_hf_rows(rows)


def prepare(entries: list[dict], source: str, start: int, n: int, shuffle_seed: int | None) -> list[dict]:
    """Drop passages left without questions, validate as the runner will, then apply the paper's selection."""
    kept = [e for e in entries if e["questions"]]
    articles = parse_articles(kept, source)  # also drops the bookkeeping key "asked"
    selected = select_articles(articles, start, n, shuffle_seed)
    if not selected:
        raise DataError(f"{source}: the selection start={start} n={n} is empty ({len(articles)} passages)")
    return selected


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert SQuAD v1.1 into seal-runner's article list (one entry per paragraph).",
        epilog="Paper eval set: --split validation --shuffle-seed 42 --start 0 --n 200",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--squad", type=Path, help="official SQuAD v1.1 JSON (dev-v1.1.json / train-v1.1.json)"
    )
    source.add_argument(
        "--hf", action="store_true", help="load datasets.load_dataset('squad') (needs network)"
    )
    parser.add_argument(
        "--split",
        choices=["train", "validation"],
        default="validation",
        help="split (--hf loads it; with --squad pass the matching file)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output JSON list")
    parser.add_argument(
        "--shuffle-seed", type=int, default=None, help="shuffle with random.Random(seed) first"
    )
    parser.add_argument("--start", type=int, default=0, help="first passage of the selection")
    parser.add_argument("--n", type=int, default=-1, help="number of passages (-1: all from --start)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.hf:
            source, entries = f"hf:squad[{args.split}]", load_hf_split(args.split)
        else:
            source, entries = str(args.squad), read_squad_file(args.squad)
        selected = prepare(entries, source, args.start, args.n, args.shuffle_seed)
        dropped = count_dropped(entries)
    except (DataError, SourceUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(selected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    questions = sum(len(a["questions"]) for a in selected)
    print(f"wrote {len(selected)} articles, {questions} questions to {args.out}")
    if dropped:
        print(f"note: dropped {dropped} questions with a blank question or no gold answer (whole split)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
