"""Inner-loop workers, one process per device (`inner.devices`), for machines with several GPUs.

Each worker loads the base model once on its device and trains its share of the groups (group i
goes to worker i mod n), sending each group's results back as soon as it is trained; the parent
records them, so a kill loses at most the groups in flight. Workers are spawned (CUDA cannot be
forked) and receive plain data: the LoRA config as a dict and the jobs themselves.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seal_runner.lora.trainer import InnerJob, InnerResult
from seal_runner.lora.updater import InnerUpdater
from seal_runner.models import load_tokenizer

Trained = list[tuple[InnerJob, InnerResult, Path | None]]


def train_in_workers(
    cfg: DictConfig, model_path: str, groups: list[list[InnerJob]], adapter_root: Path, devices: list[str]
) -> Iterator[Trained]:
    """Yield each group's (job, result, adapter) as its worker finishes it, in completion order.
    A worker that raises or dies ends the run with its device and traceback."""
    context = mp.get_context("spawn")
    results = context.Queue()
    lora = OmegaConf.to_container(cfg.lora, resolve=True)
    cpu_workers = sum(d == "cpu" for d in devices)
    threads = max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
    workers = []
    for index, device in enumerate(devices):
        share = groups[index :: len(devices)]
        if share:
            args = (device, threads, lora, model_path, cfg.model.dtype, share, str(adapter_root), results)
            workers.append(context.Process(target=_work, args=args, daemon=True, name=f"inner-{device}"))
    for worker in workers:
        worker.start()
    try:
        for _ in groups:
            kind, payload = _next(results, workers)
            if kind == "error":
                device, trace = payload
                raise RuntimeError(f"inner worker on {device} failed:\n{trace}")
            yield [(job, result, Path(adapter) if adapter else None) for job, result, adapter in payload]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        results.close()


def _next(results, workers) -> tuple[str, object]:
    """The next message; a worker that exits without reporting (killed, OOM) is an error."""
    while True:
        try:
            return results.get(timeout=5)
        except queue.Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(
                    f"inner worker {dead[0].name} exited with code {dead[0].exitcode} without reporting"
                ) from None


def _work(device, threads, lora, model_path, dtype, groups, adapter_root, results) -> None:
    try:
        if device == "cpu":
            torch.set_num_threads(threads)
        updater = InnerUpdater(OmegaConf.create(lora), model_path, load_tokenizer(model_path), device, dtype)
        for group in groups:
            trained = updater.train_group(group, Path(adapter_root))
            results.put(("group", [(job, result, str(p) if p else None) for job, result, p in trained]))
    except BaseException:
        results.put(("error", (device, traceback.format_exc())))
