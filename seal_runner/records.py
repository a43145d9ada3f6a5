"""Crash-safe run files: append-only JSONL (one write + fsync per batch) and atomic JSON writes.

Every stage reads what is already on disk and skips finished units (`ResumableLog`), so rerunning
a run directory resumes instead of redoing work. A batch of records is appended with a single
write() call, so a killed process leaves all of them or none; a torn line (power loss mid-write, or
a file edited by hand) is dropped on read with a warning, and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class ResumableLog:
    """One resumable step's JSONL file: its records by key, the units still to do, and an append
    that puts each finished batch on disk before the next one starts (a kill loses at most the
    batch in flight).

    `records` keeps every readable line in file order (one list, grown in place by `append`);
    `done` maps each record's `key` to its record (of duplicates, the last one on disk wins)."""

    def __init__(self, path: Path, key: Callable[[dict], Hashable]) -> None:
        self.path, self.key = path, key
        self.records = read_jsonl(path)
        self.done = {key(r): r for r in self.records}

    def todo(self, items: Iterable[T], key: Callable[[T], Hashable] = lambda item: item) -> list[T]:
        """The `items` whose key (`key(item)`, comparable with the records' keys) has no record yet."""
        return [item for item in items if key(item) not in self.done]

    def append(self, records: Sequence[dict]) -> None:
        """Append `records` in one write (see `append_jsonl`) and count them as done."""
        append_jsonl(self.path, records)
        self.records.extend(records)
        self.done.update((self.key(r), r) for r in records)


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; unreadable lines (torn, invalid UTF-8, not an object) are counted,
    logged and skipped. Lines split on "\\n" only: `str.splitlines` would also cut records at
    U+2028, U+0085 and other characters that JSON leaves unescaped inside strings."""
    if not path.exists():
        return []
    records, skipped = [], 0
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d unreadable line(s) (torn by an interrupted write?)", path, skipped)
    return records


def append_jsonl(path: Path, records: list[dict]) -> None:
    """Append `records` with one unbuffered write() and an fsync: a kill leaves all or none of them."""
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
    if path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path):
        payload = b"\n" + payload  # isolate a torn last line so it stays unparseable and is skipped
    with open(path, "ab", buffering=0) as f:
        view = memoryview(payload)
        while view:
            view = view[f.write(view) :]
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def write_json(path: Path, data: object) -> None:
    """Temp file + rename: readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def derive_seed(base: int, *parts: object) -> int:
    """A 31-bit seed from the run seed and a unit's ids: stable across runs, never from the clock."""
    import hashlib

    digest = hashlib.sha256(repr((base, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
