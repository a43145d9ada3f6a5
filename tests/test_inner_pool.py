"""inner.devices: one worker process per device trains its share of the adapter groups; the
records and adapters equal the in-process run's (tested with two CPU workers)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from seal_runner.config import LoraConfig
from seal_runner.inner import train_and_record, worker_devices
from seal_runner.lora.trainer import InnerJob
from seal_runner.models import load_tokenizer


class Recorder:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.logged.append(metrics)


def run_cfg(devices: list[str]):
    lora = LoraConfig(rank=4, alpha=8.0, lr=1e-2, epochs=2, batch_size=2, max_length=64, adapters_per_batch=2)
    return OmegaConf.create(
        {"lora": asdict(lora), "inner": {"devices": devices}, "device": "cpu", "model": {"dtype": "float32"}}
    )


JOBS = [
    InnerJob(f"job{i}", [f"Fact {i}: the lighthouse keeper counted {i} ships.", f"Ship {i} was red."], seed=i)
    for i in range(5)  # 3 groups of 2: worker 0 trains groups 0 and 2, worker 1 group 1
]


def test_two_cpu_workers_reproduce_the_in_process_records_and_adapters(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    runs = {}
    for name, devices in (("here", []), ("workers", ["cpu", "cpu"])):
        out = tmp_path / name
        tracker = Recorder()
        records = train_and_record(
            run_cfg(devices),
            str(tiny_model_dir),
            tokenizer,
            JOBS,
            out / "updates.jsonl",
            out / "adapters",
            tracker,
        )
        on_disk = [json.loads(line) for line in (out / "updates.jsonl").read_text().splitlines()]
        assert sorted(r["key"] for r in on_disk) == [j.key for j in JOBS]  # each job exactly once
        assert len(tracker.logged) == len(JOBS)
        runs[name] = {r["key"]: r for r in records}
    for key in runs["here"]:
        here, there = runs["here"][key], runs["workers"][key]
        assert here["steps"] == there["steps"] and here["train_tokens"] == there["train_tokens"]
        assert there["final_loss"] == pytest.approx(here["final_loss"], rel=1e-4)
        a = load_file(f"{here['adapter']}/adapter_model.safetensors")
        b = load_file(f"{there['adapter']}/adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_failing_worker_names_its_device(tmp_path):
    tokenizer_free = tmp_path / "no-model"
    with pytest.raises(RuntimeError, match="inner worker on cpu failed"):
        train_and_record(
            run_cfg(["cpu", "cpu"]),
            str(tokenizer_free),
            None,
            JOBS,
            tmp_path / "u.jsonl",
            tmp_path / "a",
            Recorder(),
        )
    assert not (tmp_path / "u.jsonl").exists()


def test_worker_devices_expand_visible_gpus():
    assert worker_devices([]) == []
    assert worker_devices(["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1"]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU visible"):
            worker_devices(["cuda:*"])
