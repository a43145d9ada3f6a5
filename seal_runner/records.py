"""Crash-safe run files: append-only JSONL (one write + fsync per batch) and atomic JSON writes.

Every stage reads what is already on disk and skips finished units, so rerunning a run directory
resumes instead of redoing work. A batch of records is appended with a single write() call, so a
killed process leaves all of them or none; a torn line (power loss mid-write, or a file edited by
hand) is dropped on read with a warning, and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


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
