"""Knowledge data loading and selection, the offline lexical grader, and the crash-safe run files.

A bad data file must fail before any model loads, with a message a user can act on: the file, the
item and the key. Selection must reproduce the paper's shuffle, or results are not comparable.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from seal_runner.domains.knowledge.data import BUILTIN_DEMO, QA, Article, DataError, load_articles
from seal_runner.graders.base import GradeItem
from seal_runner.graders.lexical import LexicalGrader, LexicalRule, contains_gold, normalize_answer, token_f1
from seal_runner.records import append_jsonl, derive_seed, read_jsonl, write_json

SHARED = Path(os.environ.get("SEAL_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
SQUAD_SAMPLE = SHARED / "data" / "squad" / "squad_val_sample50.json"


@pytest.fixture
def squad_sample() -> Path:
    if not SQUAD_SAMPLE.is_file():
        pytest.skip(f"SQuAD sample not found at {SQUAD_SAMPLE} (set SEAL_SHARED_DIR)")
    return SQUAD_SAMPLE


def _raw(path: Path | str) -> list[dict]:
    if path == BUILTIN_DEMO:
        from importlib.resources import files

        return json.loads((files("seal_runner") / "demo_data" / "knowledge_demo.json").read_text())
    return json.loads(Path(path).read_text())


def _paper_selection(raw: list[dict], start: int, n: int, seed: int = 42) -> list[dict]:
    """The paper's code, written out: shuffle a copy in place with Random(seed), then slice."""
    items = list(raw)
    random.Random(seed).shuffle(items)
    return items[start : start + n]


def _same(articles: list[Article], raw: list[dict]) -> None:
    assert len(articles) == len(raw)
    for i, (a, r) in enumerate(zip(articles, raw, strict=True)):
        assert a.index == i
        assert (a.title, a.context) == (r["title"], r["context"])
        assert a.questions == tuple(QA(q["question"], q["answer"]) for q in r["questions"])


# --- loading --------------------------------------------------------------------------------------


def test_builtin_demo_loads_whole() -> None:
    articles = load_articles(BUILTIN_DEMO)
    _same(articles, _raw(BUILTIN_DEMO))
    assert len(articles) >= 24


def test_builtin_demo_slice_reindexes() -> None:
    """`index` is the position in the selection: it is the article id in every output file."""
    raw = _raw(BUILTIN_DEMO)
    articles = load_articles(BUILTIN_DEMO, start=3, n=5)
    _same(articles, raw[3:8])
    assert [a.index for a in articles] == [0, 1, 2, 3, 4]


def test_real_squad_sample(squad_sample: Path) -> None:
    articles = load_articles(str(squad_sample))
    _same(articles, _raw(squad_sample))
    assert len(articles) == 50
    assert sum(len(a.questions) for a in articles) == 242
    assert articles[0].title == "Doctor Who"


@pytest.mark.parametrize(("start", "n"), [(0, 10), (7, 5), (40, 10), (0, -1)])
def test_paper_selection_matches_manual_shuffle(squad_sample: Path, start: int, n: int) -> None:
    raw = _raw(squad_sample)
    expected = _paper_selection(raw, start, len(raw) if n < 0 else n)
    _same(load_articles(str(squad_sample), start=start, n=n, shuffle_seed=42), expected)


def test_paper_selection_on_builtin_demo() -> None:
    """Runs without the shared data too: the shuffle really reorders and is the Random(42) one."""
    raw = _raw(BUILTIN_DEMO)
    articles = load_articles(BUILTIN_DEMO, start=2, n=6, shuffle_seed=42)
    _same(articles, _paper_selection(raw, 2, 6))
    assert [a.title for a in articles] != [r["title"] for r in raw[2:8]]


def test_selection_past_the_end_is_clipped_then_rejected_when_empty() -> None:
    raw = _raw(BUILTIN_DEMO)
    assert len(load_articles(BUILTIN_DEMO, start=len(raw) - 2, n=10)) == 2
    with pytest.raises(DataError, match="selection"):
        load_articles(BUILTIN_DEMO, start=len(raw), n=5)


# --- bad files ------------------------------------------------------------------------------------


def _good_item(title: str = "T") -> dict:
    return {"title": title, "context": "C", "questions": [{"question": "Q?", "answer": "A"}]}


def _write(tmp_path: Path, data: object, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(DataError) as info:
        load_articles(str(path))
    assert str(path) in str(info.value)


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '[\n  {"title": "T",\n  oops\n]')
    with pytest.raises(DataError) as info:
        load_articles(str(path))
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_not_a_list(tmp_path: Path) -> None:
    path = _write(tmp_path, {"data": [_good_item()]})
    with pytest.raises(DataError) as info:
        load_articles(str(path))
    assert str(path) in str(info.value) and "list" in str(info.value)


def _item_missing_context() -> list[dict]:
    bad = _good_item("Second")
    del bad["context"]
    return [_good_item(), bad]


def _question_missing_answer() -> list[dict]:
    bad = _good_item("Third")
    bad["questions"].append({"question": "Q2?"})
    return [_good_item(), _good_item("Second"), bad]


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        pytest.param(_item_missing_context(), ["item 1", "'context'", "missing"], id="missing-context"),
        pytest.param([{**_good_item(), "title": "   "}], ["item 0", "'title'", "empty"], id="empty-title"),
        pytest.param(
            [_good_item(), {**_good_item(), "questions": []}], ["item 1", "'questions'"], id="no-questions"
        ),
        pytest.param([{**_good_item(), "questions": None}], ["item 0", "'questions'"], id="questions-null"),
        pytest.param(
            _question_missing_answer(), ["item 2", "question 1", "'answer'", "missing"], id="no-answer"
        ),
        pytest.param(
            [{**_good_item(), "questions": [{"question": "Q?", "answer": 1889}]}],
            ["item 0", "question 0", "'answer'", "int"],
            id="answer-number",
        ),
        pytest.param([_good_item(), "not an object"], ["item 1", "str"], id="item-not-object"),
    ],
)
def test_bad_items_name_file_item_and_key(tmp_path: Path, data: list, fragments: list[str]) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as info:
        load_articles(str(path))
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_data_error_is_a_value_error() -> None:
    """Callers that catch ValueError (CLI, config validation) also catch data problems."""
    assert issubclass(DataError, ValueError)


# --- lexical grader -------------------------------------------------------------------------------


def _grade(rule: str, prediction: str, gold: str, **kwargs: float) -> bool | None:
    return LexicalGrader(rule, **kwargs).grade_one(GradeItem("Topic: T\nQ?", gold, prediction)).correct


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower.", "eiffel tower"),
        ("  An  apple, a   PEAR!  ", "apple pear"),
        ("theatre there anthem", "theatre there anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_exact_rule() -> None:
    assert _grade("exact", "The Eiffel Tower!", "eiffel tower")
    assert not _grade("exact", "It is the Eiffel Tower", "Eiffel Tower")


def test_contains_rule_whole_words() -> None:
    assert _grade("contains", "It was designed by Gustave Eiffel in 1889.", "Gustave Eiffel")
    assert _grade("contains", "1889", "1889")
    assert not _grade("contains", "concatenate", "cat")
    assert not _grade("contains", "Eiffel", "Gustave Eiffel")
    assert not contains_gold("anything", "the")  # a gold that normalises to nothing never matches


def test_f1_rule_and_threshold() -> None:
    assert token_f1("Gustave Eiffel", "Gustave Eiffel") == 1.0
    assert token_f1("Eiffel", "Gustave Eiffel") == pytest.approx(2 / 3)
    assert token_f1("nothing shared", "Gustave Eiffel") == 0.0
    assert _grade("f1", "Eiffel", "Gustave Eiffel", f1_threshold=0.5)
    assert not _grade("f1", "Eiffel", "Gustave Eiffel", f1_threshold=0.7)


@pytest.mark.parametrize("rule", LexicalRule.values())
@pytest.mark.parametrize("prediction", ["", "   ", "\n"])
def test_empty_prediction_is_wrong(rule: str, prediction: str) -> None:
    """As in the paper: an empty answer is graded wrong (never None, never skipped)."""
    assert _grade(rule, prediction, "Ada") is False


def test_grade_batch_detail_and_bad_rule() -> None:
    items = [GradeItem("q", "Ada", "Ada Lovelace"), GradeItem("q", "Ada", "Babbage")]
    verdicts = LexicalGrader("contains").grade(items)
    assert [v.correct for v in verdicts] == [True, False]
    assert verdicts[0].detail["grader"] == "lexical/contains"
    assert set(verdicts[0].detail) >= {"exact", "contains", "f1"}
    with pytest.raises(ValueError, match="grader.rule"):
        LexicalGrader("fuzzy")


# --- run files ------------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "records.jsonl"
    first = [{"article": 0, "text": "Ünïcødé — ok", "nested": {"a": [1, 2]}}, {"article": 1, "x": None}]
    append_jsonl(path, first)
    append_jsonl(path, [{"article": 2}])
    append_jsonl(path, [])
    assert read_jsonl(path) == [*first, {"article": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_empty_append_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.jsonl"
    append_jsonl(path, [])
    assert not path.exists()


def test_torn_last_line_dropped_and_appends_stay_readable(tmp_path: Path) -> None:
    """A kill mid-write leaves a partial line; it must be skipped, and must not swallow the next record."""
    path = tmp_path / "records.jsonl"
    path.write_text('{"article": 0}\n{"article": 1, "te')
    assert read_jsonl(path) == [{"article": 0}]
    append_jsonl(path, [{"article": 1}, {"article": 2}])
    assert read_jsonl(path) == [{"article": 0}, {"article": 1}, {"article": 2}]


def test_write_json_atomic_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "summary.json"
    write_json(path, {"accuracy": 0.5, "name": "é"})
    write_json(path, {"accuracy": 0.75})
    assert json.loads(path.read_text()) == {"accuracy": 0.75}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"], "temp files left behind"


def test_derive_seed_stable_and_distinct() -> None:
    """Pinned values: a change here silently changes every sampled self-edit and inner run."""
    assert derive_seed(0) == 436459153
    assert derive_seed(0, "article", 3) == 280524552
    assert derive_seed(42, "article", 3, "seed", 1) == 29342436
    assert derive_seed(7, "a", 1) == derive_seed(7, "a", 1)
    variants = {derive_seed(0, 1, 2), derive_seed(0, 2, 1), derive_seed(1, 1, 2), derive_seed(0, "1", 2)}
    assert len(variants) == 4
    grid = {derive_seed(s, "article", a, "rep", r) for s in range(3) for a in range(50) for r in range(5)}
    assert len(grid) == 750
    assert all(0 <= x < 2**31 for x in grid)
