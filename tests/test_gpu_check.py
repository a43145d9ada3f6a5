"""scripts/gpu_check.py: its `--smoke` run (every measurement on 2-layer models, the CPU here) writes
a complete report, and without a GPU a full run refuses with a message instead of a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def gpu_check(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_smoke_run_reports_every_measurement(tmp_path) -> None:
    out = tmp_path / "x.json"
    proc = gpu_check("--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    assert report["skipped"] == []
    assert set(report["architectures"]) == {"qwen2.5-7b", "llama-3.2-1b"}
    assert all(
        a["num_hidden_layers"] == 2 and a["matmul_params"] > 0 for a in report["architectures"].values()
    )

    paths = report["knowledge"]
    assert list(paths) == ["reference", "fast K=1", "fast K=4", "fast K=8"]
    assert paths["reference"]["lora"]["mode"] == "reference"
    for name, m in paths.items():
        assert m["edits"] > 0 and not m["stopped_by_budget"] and m["failed_edits"] == 0, name
        assert m["seconds_per_edit"] > 0 and m["train_seconds_per_edit"] > 0, name
        assert m["train_tokens_per_edit"] > 0 and m["steps_per_edit"] > 0, name
        assert "peak_cuda_gb" in m, name
    for k in (1, 4, 8):
        assert paths[f"fast K={k}"]["adapters_per_batch"] == k
        assert paths[f"fast K={k}"]["lora"]["mode"] == "fast"

    estimate = report["round_estimate"]
    assert estimate["updates"] == 750  # experiment=paper/knowledge_restem: 50 x 5 x 3
    assert "ESTIMATE" in estimate["note"]
    assert set(estimate["gpu_hours"]) == set(paths)
    assert all(hours > 0 for hours in estimate["gpu_hours"].values())

    arc = report["arc"]
    assert arc["lora"]["rank"] == 128 and arc["lora"]["batch_size"] == 2
    assert list(arc["lengths"]) == ["L=64"]
    for m in arc["lengths"].values():
        assert m["seconds_per_step"] > 0 and m["seconds_per_adapter_step"] > 0
        assert m["estimated_seconds_per_capped_edit"] > 0 and m["failed_adapters"] == 0
    assert report["elapsed_seconds"] > 0
    assert "GPU-h" in proc.stdout and "s/step" in proc.stdout


def test_full_run_without_a_gpu_names_the_way_out() -> None:
    proc = gpu_check(env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    assert "no CUDA GPU visible" in proc.stderr and "--smoke" in proc.stderr
    assert "Traceback" not in proc.stderr
