"""The resumable-log helper every step resumes through: a torn last line, done keys and append order."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from seal_runner.records import ResumableLog, read_jsonl


def key(record: dict) -> tuple[int, int]:
    return record["article"], record["sample"]


def test_a_missing_file_has_everything_to_do(tmp_path: Path) -> None:
    log = ResumableLog(tmp_path / "none.jsonl", key)
    assert log.records == [] and log.done == {}
    assert log.todo([(0, 0), (0, 1)]) == [(0, 0), (0, 1)]
    log.append([])
    assert not (tmp_path / "none.jsonl").exists()


def test_resume_skips_done_keys_in_the_items_order(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({"article": a, "sample": s}) + "\n" for a, s in [(1, 0), (0, 1)]))
    log = ResumableLog(path, key)
    items = [(a, s) for a in range(2) for s in range(2)]
    assert log.todo(items) == [(0, 0), (1, 1)]
    units = [{"a": 1, "s": 1}, {"a": 1, "s": 0}]
    assert log.todo(units, key=lambda u: (u["a"], u["s"])) == [{"a": 1, "s": 1}]


def test_torn_last_line_is_redone_and_the_append_starts_on_a_fresh_line(tmp_path: Path, caplog) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"article": 0, "sample": 0}\n{"article": 0, "sample": 1, "te')  # killed mid-write
    with caplog.at_level(logging.WARNING):
        log = ResumableLog(path, key)
    assert "skipped 1 unreadable line(s)" in caplog.text
    assert log.todo([(0, 0), (0, 1)]) == [(0, 1)]
    log.append([{"article": 0, "sample": 1, "text": "again"}])
    assert read_jsonl(path) == [{"article": 0, "sample": 0}, {"article": 0, "sample": 1, "text": "again"}]
    assert ResumableLog(path, key).todo([(0, 0), (0, 1)]) == []


def test_appends_land_in_order_and_count_as_done_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "r.jsonl"
    log = ResumableLog(path, key)
    first = [{"article": 1, "sample": 0}, {"article": 0, "sample": 0}]
    log.append(first)
    assert log.todo([(0, 0), (2, 0)]) == [(2, 0)]  # no reread needed
    log.append([{"article": 2, "sample": 0}])
    assert log.records == read_jsonl(path) == [*first, {"article": 2, "sample": 0}]
    written = [json.dumps(r, ensure_ascii=False) for r in log.records]
    assert path.read_text().splitlines() == written  # one line per record, serialised as before


def test_of_duplicate_keys_every_line_is_kept_and_the_last_is_done(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"article": 0, "sample": 0, "v": 1}\n{"article": 1, "sample": 0}\n{"article": 0, "sample": 0, "v": 2}\n'
    )
    log = ResumableLog(path, key)
    assert len(log.records) == 3
    assert log.done[(0, 0)] == {"article": 0, "sample": 0, "v": 2}
    assert list(log.done) == [(0, 0), (1, 0)]
