"""Articles in the paper's list format: [{title, context, questions: [{question, answer}]}]."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from seal_runner.domains.knowledge.generator import generate_articles
from seal_runner.errors import InputError

BUILTIN_DEMO = "builtin:demo"
GENERATED = "generated:"  # generated:<seed> = invented passages from generator.py, endless per seed


class DataError(InputError):
    """A data file that cannot be used; the message names the file, the item and the problem."""


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True)
class Article:
    index: int  # position in the selected list: the article's id in every output file
    title: str
    context: str
    questions: tuple[QA, ...]


def _read_json(path: str) -> tuple[str, object]:
    if path == BUILTIN_DEMO:
        resource = files("seal_runner") / "demo_data" / "knowledge_demo.json"
        return "builtin:demo (seal_runner/demo_data/knowledge_demo.json)", json.loads(resource.read_text())
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{path}: no such data file (domain.data_path)")
    try:
        return str(file), json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc


def _nonempty_str(item: dict, key: str, where: str) -> str:
    if key not in item:
        raise DataError(f"{where}: missing key {key!r}")
    value = item[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: key {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: key {key!r} is empty")
    return value


def parse_articles(raw: object, source: str) -> list[dict]:
    """Validate the raw list; every problem names the file and the item index."""
    if not isinstance(raw, list):
        raise DataError(f"{source}: expected a JSON list of articles, got {type(raw).__name__}")
    articles = []
    for i, item in enumerate(raw):
        where = f"{source}: item {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object, got {type(item).__name__}")
        title, context = _nonempty_str(item, "title", where), _nonempty_str(item, "context", where)
        questions = item.get("questions")
        if not isinstance(questions, list) or not questions:
            raise DataError(f"{where} ({title!r}): key 'questions' must be a non-empty list")
        qas = []
        for j, q in enumerate(questions):
            qwhere = f"{where} ({title!r}) question {j}"
            if not isinstance(q, dict):
                raise DataError(f"{qwhere}: expected an object, got {type(q).__name__}")
            qas.append(
                {
                    "question": _nonempty_str(q, "question", qwhere),
                    "answer": _nonempty_str(q, "answer", qwhere),
                }
            )
        articles.append({"title": title, "context": context, "questions": qas})
    return articles


def select_articles(raw: list[dict], start: int, n: int, shuffle_seed: int | None) -> list[dict]:
    """The paper's selection: shuffle in place with random.Random(seed), then take [start, start + n)."""
    items = list(raw)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(items)
    end = len(items) if n < 0 else start + n
    return items[start:end]


def _generated(path: str, start: int, n: int) -> tuple[str, list[dict]]:
    """Articles [start, start + n) of a generated set. The set has no end, so a count is required."""
    seed = path.removeprefix(GENERATED)
    if not seed.lstrip("-").isdigit():
        raise DataError(f"{path}: expected generated:<integer seed>, e.g. generated:0 (domain.data_path)")
    if n < 1 or start < 0:
        raise DataError(
            f"{path}: a generated set is endless, so it needs a count n >= 1 and start >= 0 "
            f"(got start={start} n={n}; set domain.n_articles)"
        )
    return f"{path} (generated)", generate_articles(n, int(seed), start)


def load_articles(path: str, start: int = 0, n: int = -1, shuffle_seed: int | None = None) -> list[Article]:
    """Articles [start, start + n) of `path` (n = -1: all). A generated set ignores `shuffle_seed`: its
    articles are already random draws, and shuffling an endless list has no meaning."""
    if path.startswith(GENERATED):
        source, raw = _generated(path, start, n)
        selected = parse_articles(raw, source)
    else:
        source, raw = _read_json(path)
        selected = select_articles(parse_articles(raw, source), start, n, shuffle_seed)
    if not selected:
        raise DataError(f"{source}: the selection start={start} n={n} is empty ({len(raw)} articles)")
    return [
        Article(i, a["title"], a["context"], tuple(QA(q["question"], q["answer"]) for q in a["questions"]))
        for i, a in enumerate(selected)
    ]
