"""The policy SFT as data-parallel processes under `accelerate launch` (one per GPU).

`launch` (the parent) writes the job to a file beside the output and runs
`accelerate launch --multi_gpu --num_processes N -m seal_runner.sft_launch <job>`; each process
initialises torch.distributed (NCCL on GPUs, gloo on CPU), takes its share of every optimizer
step's micro-batches and sums gradients with the others (outer.train_lora), and rank 0 merges and
publishes the checkpoint with its completion marker. The parent then returns the stored stats, so
the caller sees the same result as an in-process `train_sft`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import asdict
from pathlib import Path

from seal_runner.config import SFTConfig


def launch(
    model_path: str, pairs: list[tuple[str, str]], out_dir: Path, cfg: SFTConfig, dtype: str, processes: int
) -> dict:
    from seal_runner.outer import read_done

    job = out_dir.parent / f".{out_dir.name}.sft-job-{uuid.uuid4().hex[:12]}.json"
    job.write_text(
        json.dumps(
            {
                "model_path": model_path,
                "pairs": pairs,
                "out_dir": str(out_dir),
                "cfg": asdict(cfg),
                "dtype": dtype,
            }
        )
    )
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "seal_runner.sft_launch", str(job),
    ]  # fmt: skip
    try:
        code = subprocess.run(command, check=False).returncode
    finally:
        job.unlink(missing_ok=True)
    stats = read_done(out_dir)
    if code != 0 or stats is None:
        raise RuntimeError(
            f"policy SFT under accelerate launch ({processes} processes) exited with code {code}; its "
            f"processes' errors are in the log above. Command: {' '.join(command)}"
        )
    return stats


def main(job_file: str) -> None:
    import torch
    import torch.distributed as dist

    from seal_runner.outer import fit_sft

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
