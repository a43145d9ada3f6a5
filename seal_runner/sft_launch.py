"""One process of the policy SFT under `accelerate launch` (`outer.launch_sft` starts N of them).

`python -m seal_runner.sft_launch <job>` reads the job file `launch_sft` wrote beside the output and
runs `outer.fit_sft` with it. TRL's trainer finds the launcher's environment (ranks, world size,
NCCL on GPUs, gloo on CPU) and trains data-parallel; the main process merges and publishes the
checkpoint with its completion marker, which the parent reads back.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from seal_runner.config import SFTConfig
from seal_runner.outer import fit_sft


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    fit_sft(
        job["model_path"],
        [tuple(p) for p in job["pairs"]],
        Path(job["out_dir"]),
        SFTConfig(**job["cfg"]),
        device=f"cuda:{local}" if torch.cuda.is_available() else "cpu",
        dtype=job["dtype"],
    )


if __name__ == "__main__":
    main(sys.argv[1])
