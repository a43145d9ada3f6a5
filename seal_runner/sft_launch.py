"""One process of the policy SFT under `accelerate launch` (`outer.launch_sft` starts N of them).

`python -m seal_runner.sft_launch <job>` reads the job file `launch_sft` wrote beside the output,
initialises torch.distributed (NCCL on GPUs, gloo on CPU) and runs `outer.fit_sft` as its rank:
each process takes its share of every optimizer step's micro-batches and sums gradients with the
others (outer.train_lora), and rank 0 merges and publishes the checkpoint with its completion
marker, which the parent reads back.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from seal_runner.config import SFTConfig
from seal_runner.outer import fit_sft


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    gpu = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if gpu:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if gpu else "gloo")
    try:
        fit_sft(
            job["model_path"],
            [tuple(p) for p in job["pairs"]],
            Path(job["out_dir"]),
            SFTConfig(**job["cfg"]),
            device=f"cuda:{local}" if gpu else "cpu",
            dtype=job["dtype"],
            rank=dist.get_rank(),
            world=dist.get_world_size(),
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
