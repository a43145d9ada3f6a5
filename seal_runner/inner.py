"""The inner loop's driver: InnerJobs in, trained PEFT adapter directories and their records out.

Each group of jobs is trained by an `InnerUpdater` (lora/updater.py) in this process, or by one
worker process per device (inner_pool.py) when `inner.devices` lists several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from seal_runner.errors import InputError
from seal_runner.inner_pool import train_in_workers
from seal_runner.lora.trainer import InnerJob, InnerResult
from seal_runner.lora.updater import InnerUpdater, group_size, groups_of
from seal_runner.models import release_memory
from seal_runner.records import append_jsonl


@dataclass(frozen=True)
class InnerUpdate:
    """One trained inner update as stored in updates.jsonl (a domain's own fields follow `key`)."""

    key: str
    steps: int
    train_tokens: int
    seconds: float
    first_loss: float | None
    final_loss: float | None
    failed: str | None
    adapter: str | None

    @classmethod
    def of(cls, key: str, result: InnerResult, adapter: Path | None) -> InnerUpdate:
        first = result.losses[0] if result.losses else None
        return cls(
            key,
            result.steps,
            result.train_tokens,
            result.seconds,
            first,
            result.final_loss,
            result.failed,
            str(adapter) if adapter else None,
        )

    def to_json(self, described: dict) -> dict:
        return {"key": self.key, **described, **asdict(self)}  # `key` keeps its first place


@dataclass(frozen=True)
class SkippedUpdate:
    """A job recorded as failed without training (e.g. a self-edit with no training sequences)."""

    key: str
    failed: str
    adapter: None = None

    def to_json(self) -> dict:
        return asdict(self)


def update_key(record: dict) -> str:
    """The key of an `InnerUpdate` or `SkippedUpdate` record: the job's key."""
    return record["key"]


def train_and_record(
    cfg: DictConfig,
    model_path: str,
    tokenizer,
    jobs: list[InnerJob],
    path: Path,
    adapter_root: Path,
    tracker,
    describe: Callable[[InnerJob], dict] = lambda job: {},
) -> list[dict]:
    """Train `jobs` on `model_path` and append one record per job to `path`; `describe` adds the
    domain's fields (after `key`). Returns the new records.

    Groups of jobs are fixed by position (`lora.adapters_per_batch` on the fast path) and each is
    trained in this process, or by one worker per device when `inner.devices` lists several. A
    group's records are appended in one write, so a kill never leaves half a group on disk: a
    resumed run retrains whole groups with the same partners and so reproduces the uninterrupted
    run's numbers exactly (workers finish groups in any order; records are found by key)."""
    groups = groups_of(jobs, group_size(cfg.lora))
    devices = worker_devices(cfg.inner.devices)
    if len(devices) > 1:
        trained = train_in_workers(cfg, model_path, groups, adapter_root, devices)
    else:
        trained = _train_here(cfg, model_path, tokenizer, groups, adapter_root, devices)
    records = []
    bar = tqdm(
        total=len(jobs), desc=f"inner updates ({cfg.lora.mode}, {len(devices) or 1} device(s))", unit="edit"
    )
    for group in trained:
        new = [
            InnerUpdate.of(job.key, result, adapter).to_json(describe(job)) for job, result, adapter in group
        ]
        append_jsonl(path, new)
        records += new
        for record in new:
            tracker.log(
                {"inner/final_loss": record["final_loss"] or float("nan"), "inner/seconds": record["seconds"]}
            )
        bar.update(len(group))
    bar.close()
    release_memory()  # the base model + K adapter slots; the QA engine comes next
    return records


def worker_devices(devices) -> list[str]:
    """`inner.devices`: empty = the run's own device, in this process; a list = one worker process
    per entry (`cuda:*` = every visible GPU). Several workers on one CPU split its cores."""
    out: list[str] = []
    for device in devices or []:
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())] if device == "cuda:*" else [device]
    if devices and not out:
        raise InputError(f"inner.devices={list(devices)} names no device (no GPU visible for cuda:*)")
    return out


def _train_here(
    cfg: DictConfig,
    model_path: str,
    tokenizer,
    groups: list[list[InnerJob]],
    adapter_root: Path,
    devices: list[str],
) -> Iterator[list[tuple[InnerJob, InnerResult, Path | None]]]:
    updater = InnerUpdater(
        cfg.lora, model_path, tokenizer, devices[0] if devices else cfg.device, cfg.model.dtype
    )
    for group in groups:
        yield updater.train_group(group, adapter_root)
