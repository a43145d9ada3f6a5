"""Guarding a run dir: one writer at a time, and every record in it made under one config.

Every stage resumes from what is on disk in its run dir, so before any work (before a model loads):

- **One writer.** An OS lock (`flock`) on `<run_dir>/.lock` is taken without waiting and held for
  the life of the process; a second `seal-run` on the same dir stops naming the holder's pid and
  host. The kernel drops the lock when its holder dies, even by SIGKILL, so a requeued job resumes
  with no stale lock to clear. Forked children close their copy so that only the run holds it.
- **One config.** The resolved config, minus keys that cannot change a result (`IGNORED`), is
  stored in `<run_dir>/run_config.json` on the first start. Hydra rewrites `.hydra/config.yaml` on
  every start, so that file is no record of what the results on disk were made with. A rerun whose
  config differs is refused with every differing key, old and new value, unless `resume=force`:
  then the differences are logged, recorded in the file, and the new config is the stored one.
  A key the stored config lacks is no difference while it holds its schema default, so a run dir
  survives an upgrade that adds options whose default keeps the old behaviour. An option added with
  a default that changes it (`EARLIER_BEHAVIOUR`) is compared with the value that reproduces what
  seal-runner did before it existed, so an old run dir is refused under the new default, naming the
  option, instead of mixing records made both ways.
  A value renamed without a change to the records (`RENAMED`: `stage=arc` is now `stage=evaluate`)
  is no difference either.
  A dir with no results yet (a start that failed before its first record) takes the new config.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seal_runner import config as schemas
from seal_runner.config import Resume
from seal_runner.errors import InputError
from seal_runner.logs import LOG_DIR
from seal_runner.records import write_json
from seal_runner.tracking import public_config

log = logging.getLogger(__name__)

CONFIG_FILE = "run_config.json"
LOCK_FILE = ".lock"
# Dotted keys that cannot change a result: where logs go, names, the switch below, and scale-out
# (README, Multi-GPU: inner workers and data-parallel SFT reproduce the single-process results).
IGNORED = (
    "logger",
    "run_dir",
    "experiment_name",
    "resume",
    "model.cache_dir",
    "inner.devices",
    "sft.num_processes",
)
# Options added with a default other than the old behaviour -> the value that reproduces it: what a
# run dir made before the option existed holds records of.
EARLIER_BEHAVIOUR = {"domain.test_inputs": "split"}  # ARC: one task per test input until it existed
# Values renamed without a change to the records: a stored old name is the new one.
RENAMED = {"stage": {"arc": "evaluate"}}  # ARC's Table 1 moved into stage=evaluate, layout unchanged
# What a start writes before its first result: not results a config change could contradict.
BOOKKEEPING = {".hydra", "wandb", LOG_DIR, LOCK_FILE, CONFIG_FILE}
ABSENT = "<absent>"


class Earlier(str):
    """A key the stored config lacks, standing for its `EARLIER_BEHAVIOUR` value."""


# The schemas each top-level key can take (groups typed Any pick one per option).
GROUP_SCHEMAS: dict[str, tuple[type, ...]] = {
    "model": (schemas.ModelConfig,),
    "domain": (schemas.KnowledgeDomainConfig, schemas.ARCDomainConfig),
    "selfedit_prompt": (schemas.SelfEditPromptConfig, schemas.ARCSelfEditPromptConfig),
    "sampling": (schemas.SamplingConfig,),
    "restem": (schemas.RestemConfig,),
    "lora": (schemas.LoraConfig,),
    "inner": (schemas.InnerConfig,),
    "sft": (schemas.SFTConfig,),
    "continual": (schemas.ContinualConfig,),
    "cpt": (schemas.CPTConfig,),
    "engine": (schemas.VLLMEngineConfig, schemas.HFEngineConfig, schemas.OpenAIEngineConfig),
    "qa_engine": (schemas.VLLMEngineConfig, schemas.HFEngineConfig, schemas.OpenAIEngineConfig),
    "grader": (schemas.LexicalGraderConfig, schemas.LLMJudgeGraderConfig),
}

_held: dict[Path, int] = {}  # run dir -> fd of its lock, open for the life of the process


def guard(cfg: DictConfig, run_dir: Path) -> None:
    """Make `run_dir`, take its lock and check this start's config against the stored one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock(run_dir)
    check_config(run_dir, fingerprint(cfg), cfg.resume)


def lock(run_dir: Path) -> None:
    """Hold `<run_dir>/.lock` for the life of the process; a dir this process holds is a no-op."""
    key = run_dir.resolve()
    if key in _held:
        return
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that is still starting"
        os.close(fd)
        raise InputError(
            f"run dir {run_dir} is in use by another seal-run ({holder}; lock {path}); wait for it to "
            "finish or stop it, or choose another hydra.run.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
    _held[key] = fd


def _close_in_child() -> None:
    """A forked child shares the lock: close its copy, so the lock goes with the run, not the child
    (closing a copy keeps the lock; only unlocking it or closing the last copy would release it)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


def fingerprint(cfg: DictConfig) -> dict:
    """The resolved config as plain JSON data (secrets redacted), without the `IGNORED` keys."""
    config = json.loads(json.dumps(public_config(cfg)))
    for key in IGNORED:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


def differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old, new) for every leaf that differs; a missing key is `ABSENT`. A key the
    stored config lacks but whose new value is its schema default is no difference: an option added
    to seal-runner after the run started, left at the default that keeps the old behaviour; one in
    `EARLIER_BEHAVIOUR` stands for the value listed there; a stored value `RENAMED` since is its new name."""
    out = {}
    for key in sorted(old.keys() | new.keys(), key=str):
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if a is ABSENT and f"{prefix}{key}" in EARLIER_BEHAVIOUR:
            a = Earlier(EARLIER_BEHAVIOUR[f"{prefix}{key}"])
        a = RENAMED.get(f"{prefix}{key}", {}).get(a, a) if isinstance(a, str) else a
        if isinstance(b, dict) and (isinstance(a, dict) or a is ABSENT):  # a new section: leaf by leaf
            out |= differences({} if a is ABSENT else a, b, f"{prefix}{key}.")
        elif a != b and not (a is ABSENT and is_schema_default(f"{prefix}{key}", b)):
            out[f"{prefix}{key}"] = (a, b)
    return out


def is_schema_default(dotted: str, value: Any) -> bool:
    """Whether `value` is the dataclass default of `dotted` in a schema its group can take (a key
    outside the groups, e.g. `evaluate.samples`: in the top-level schema)."""
    group, *path = dotted.split(".")
    if group not in GROUP_SCHEMAS:
        group, path = "", [group, *path]
    for schema in GROUP_SCHEMAS.get(group, (schemas.SealConfig,)):
        node: Any = _schema_defaults(schema)
        for part in path:
            node = node.get(part, ABSENT) if isinstance(node, dict) else ABSENT
        if node is not ABSENT and node == value:
            return True
    return False


@functools.cache
def _schema_defaults(schema: type) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(schema), resolve=False, enum_to_str=True)


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    """`lora.lr: 0.001 -> 1e-05; lora.mode: "fast" -> "reference"`."""
    return "; ".join(f"{key}: {_show(a)} -> {_show(b)}" for key, (a, b) in changes.items())


def _show(value: Any) -> str:
    if isinstance(value, Earlier):
        return f"{ABSENT} (made before the option: {json.dumps(value)})"
    return value if value is ABSENT else json.dumps(value, ensure_ascii=False)


def check_config(run_dir: Path, config: dict, resume: Resume) -> None:
    """Store `config` on the first start; refuse, or with `resume=force` record, a different one."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        write_json(path, {"config": config, "overrides": []})
        return
    try:
        stored = json.loads(path.read_text())
        changes = differences(stored["config"], config)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise InputError(
            f"{path} is not a run config written by seal-run; remove it to store this start's config"
        ) from None
    if not changes:
        return
    if not has_results(run_dir):
        log.info(
            "run dir %s holds no results yet: its stored config is replaced (%s)", run_dir, describe(changes)
        )
        write_json(path, {**stored, "config": config})
        return
    if resume != Resume.force:
        raise InputError(
            f"run dir {run_dir} holds results made with another config ({path}); differing keys: "
            f"{describe(changes)}. Rerun with the stored values, choose a new hydra.run.dir, or pass "
            "resume=force to continue with the new config (records already on disk are kept)"
        )
    log.warning(
        "resume=force: run dir %s holds results made with another config; continuing with the new "
        "one, the stored one is overridden: %s",
        run_dir,
        describe(changes),
    )
    override = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "changes": {key: {"old": a, "new": b} for key, (a, b) in changes.items()},
    }
    write_json(path, {"config": config, "overrides": [*stored.get("overrides", []), override]})


def has_results(run_dir: Path) -> bool:
    """Whether a start has written anything beyond `BOOKKEEPING` and log files."""
    for entry in run_dir.iterdir():
        if entry.name in BOOKKEEPING or (entry.is_file() and entry.suffix == ".log"):
            continue
        if entry.is_file() or any(p.is_file() for p in entry.rglob("*")):
            return True
    return False
