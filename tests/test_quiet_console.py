"""The default job, shrunk, as a user runs it: its console holds seal-run's lines, not the libraries'.

Before `hydra/job_logging=quiet` a default run printed ~36 lines from vLLM (its own handler, in the
main process, the engine core and its worker), Triton, torch and Python warnings. They now go to
`<run dir>/logs/libraries.log`; tqdm bars and C++ prints (torch's NUMA notice) still reach the console.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEAL_RUN = str(Path(sys.executable).with_name("seal-run"))
LIBRARY_LINES = {
    "vLLM's own format": re.compile(r"\((?:MainProcess|EngineCore\w*|VllmWorker\S*|Worker\w*) pid=\d+\)"),
    "a library's logger": re.compile(r"\]\[(?:vllm|triton|torch|transformers|peft|py\.warnings)[.\]]"),
    "Triton's notices": re.compile(r"Triton"),
    "a Python warning": re.compile(r"\b[A-Z]\w*Warning: "),
}


def test_default_job_console_has_no_library_lines(smollm2_path, tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = [
        SEAL_RUN,  # the default preset, demo/knowledge_cpu: vLLM samples, the HF engine answers
        f"model.name_or_path={smollm2_path}",
        "logger=none",
        "domain.n_articles=1",
        "restem.contexts_per_round=2",
        "restem.samples_per_context=2",
        "sampling.max_tokens=32",
        "domain.drop_cut_line=false",
        "lora.epochs=1",
        "sft.epochs=1",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-6000:]

    assert "stage restem" in proc.stdout and "held-out accuracy (%) per policy" in proc.stdout
    lines = re.split(r"[\r\n]+", console)  # tqdm redraws with \r
    for what, pattern in LIBRARY_LINES.items():
        leaked = [line for line in lines if pattern.search(line)]
        assert not leaked, f"{what} on the console:\n" + "\n".join(leaked[:20])

    logs = run_dir / "logs"
    libraries = (logs / "libraries.log").read_text()
    assert "][vllm." in libraries, libraries[-3000:]
    # vLLM's engine core applied the shared config (VLLM_LOGGING_CONFIG_PATH): its records are here too.
    assert re.search(r"\]\[(?!MainProcess )[^\]]+ \d+\]\[vllm\.", libraries), libraries[-3000:]
    assert "][seal_runner." not in libraries
    own = (logs / "seal_runner.log").read_text()
    assert "stage restem" in own and "][vllm." not in own
    assert (logs / "logging.json").exists()
