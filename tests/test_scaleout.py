"""Sweeps through real Hydra launchers: submitit (the SLURM launcher's local twin) and joblib.

Each sweep point must run as its own job with its own run dir and its own offline W&B run, and all
jobs of one sweep must share one W&B group (read back from the binary offline run files), so a
sweep sent to a cluster with `hydra/launcher=slurm` lands in W&B as one comparable group.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import compose_config, seal_run
from hydra.errors import HydraException
from omegaconf import OmegaConf


def tiny_sweep(model_dir: Path, sweep: Path) -> list[str]:
    """stage=evaluate on one passage, two seeds: the smallest job that samples, trains and answers
    (after `-m` and the launcher: Hydra's parser wants `-m` before the overrides)."""
    return [
        "stage=evaluate",
        f"model.name_or_path={model_dir}",
        "engine=hf",
        "engine@qa_engine=hf",
        "domain.n_articles=1",
        "sampling.max_tokens=16",
        "domain.qa_max_tokens=4",
        "lora.epochs=1",
        "lora.rank=4",
        "lora.alpha=8",
        "logger=wandb",
        "logger.mode=offline",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    ]


def wandb_run_records(run_file: Path) -> list:
    """Records of an offline `.wandb` file: a 7-byte W&B header, then LevelDB-log framing (32 KiB
    blocks of chunks: crc32 u32, length u16, type u8 = full/first/middle/last) around protobufs."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pending, records = run_file.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_run(job_dir: Path):
    """The one offline W&B run of a job: its RunRecord (id, group, name)."""
    (run_dir,) = (job_dir / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    runs = [r.run for r in wandb_run_records(run_file) if r.HasField("run")]
    assert runs, f"no run record in {run_file}"
    return runs[0]


def assert_two_jobs_in_one_group(sweep: Path) -> None:
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert [p.name for p in jobs] == ["0", "1"], list(sweep.iterdir())
    summaries = [json.loads((p / "summary.json").read_text()) for p in jobs]
    assert [s["seed"] for s in summaries] == [0, 1]
    assert all(s["inner_updates"] >= 1 for s in summaries)
    runs = [wandb_run(p) for p in jobs]
    assert runs[0].run_id != runs[1].run_id
    assert {r.run_group for r in runs} == {str(sweep)[-128:]}, [r.run_group for r in runs]


@pytest.mark.integration
def test_submitit_local_multirun_two_jobs_one_wandb_group(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    seal_run(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=15",
        *tiny_sweep(tiny_model_dir, sweep),
        cwd=tmp_path,
    )
    assert_two_jobs_in_one_group(sweep)
    # Real submitit: each job ran as its own submitted process and left its pickled result.
    results = sorted((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2, sorted(p.name for p in (sweep / ".submitit").rglob("*"))


@pytest.mark.integration
def test_joblib_multirun_two_parallel_jobs_one_wandb_group(tiny_model_dir, tmp_path):
    sweep = tmp_path / "sweep"
    seal_run("-m", "hydra/launcher=local_parallel", *tiny_sweep(tiny_model_dir, sweep), cwd=tmp_path)
    assert_two_jobs_in_one_group(sweep)


def test_slurm_launcher_config_carries_the_cluster_fields(hydra_ctx):
    """No cluster here: check that the shipped launcher composes into submitit's SLURM launcher
    with its fields overridable from the command line, and that a typo in one fails naming it
    (what `seal-run ... --cfg hydra` prints, composed here without a subprocess)."""
    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=2"]
    launcher = OmegaConf.to_yaml(compose_config(overrides, return_hydra_config=True).hydra.launcher)
    for line in (
        "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "partition: gpu",
        "gpus_per_node: 2",
        "timeout_min: 720",
        "max_num_timeout: 3",
    ):
        assert line in launcher, launcher
    with pytest.raises(HydraException) as bad:
        compose_config(["hydra/launcher=slurm", "hydra.launcher.partiton=gpu"], return_hydra_config=True)
    assert "partiton" in str(bad.value)
