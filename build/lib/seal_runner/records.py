"""Crash-safe run files: append-only JSONL (flush + fsync per record) and atomic JSON writes.

Every stage reads what is already on disk and skips finished units, so rerunning a run directory
resumes instead of redoing work. A half-written last line (a kill mid-write) is dropped on read.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # torn write from an interrupted run
    return records


def append_jsonl(path: Path, records: list[dict]) -> None:
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
    with open(path, "a") as f:
        if torn:
            f.write("\n")  # isolate a torn last line so it stays unparseable and is skipped
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def write_json(path: Path, data: object) -> None:
    """Temp file + rename: readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def derive_seed(base: int, *parts: object) -> int:
    """A 31-bit seed from the run seed and a unit's ids: stable across runs, never from the clock."""
    import hashlib

    digest = hashlib.sha256(repr((base, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
