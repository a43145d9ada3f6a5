"""One device's inner updater: the base model loaded once, the trainer `lora.mode` names, OOM retry.

`lora.mode=fast` keeps one resident base model with K adapter slots and trains K jobs per pass;
`lora.mode=reference` runs the paper's protocol one job at a time. Either way each job ends as a
PEFT-format adapter that any engine can serve. seal_runner/inner.py runs updaters in this process
or in one worker per device (inner_pool.py).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from seal_runner.choices import LoraMode
from seal_runner.errors import InputError
from seal_runner.lora.multi_lora import MultiLoraModel
from seal_runner.lora.trainer import FastInnerTrainer, InnerJob, InnerResult, ReferenceInnerTrainer
from seal_runner.models import load_causal_lm, release_memory

log = logging.getLogger(__name__)


class InnerUpdater:
    def __init__(
        self,
        lora_cfg,
        model_path: str,
        tokenizer,
        device: str = "auto",
        dtype: str = "auto",
        model: torch.nn.Module | None = None,
    ) -> None:
        """`model`: an already built causal LM to train over instead of loading `model_path` (a random
        initialised architecture: scripts/gpu_check.py measures a 7B without its weights); `model_path`
        then only names the base in the saved adapters' configs."""
        if lora_cfg.mode not in LoraMode.values():  # a LoraConfig built in Python is not checked by OmegaConf
            raise InputError(f"lora.mode must be one of {LoraMode.values()}, got {lora_cfg.mode!r}")
        # A private copy: an out-of-memory retry lowers max_tokens_per_forward for this updater only.
        lora_cfg = (
            OmegaConf.create(OmegaConf.to_container(lora_cfg, resolve=True))
            if isinstance(lora_cfg, DictConfig)
            else copy.deepcopy(lora_cfg)  # a LoraConfig dataclass (scripts, tests)
        )
        self.cfg, self.model_path = lora_cfg, model_path
        base = (
            model
            if model is not None
            else load_causal_lm(
                model_path, dtype=dtype, device=device, attn_implementation=str(lora_cfg.attn_implementation)
            )
        )
        if lora_cfg.mode == LoraMode.fast:
            lora = MultiLoraModel(
                base,
                list(lora_cfg.target_modules),
                lora_cfg.adapters_per_batch,
                lora_cfg.rank,
                lora_cfg.dropout,
            )
            self.fast: FastInnerTrainer | None = FastInnerTrainer(lora, tokenizer, lora_cfg)
            self.reference: ReferenceInnerTrainer | None = None
        else:
            self.fast, self.reference = None, ReferenceInnerTrainer(base, tokenizer, lora_cfg)

    @property
    def group_size(self) -> int:
        return group_size(self.cfg)

    def run(
        self, jobs: list[InnerJob], adapter_root: Path
    ) -> Iterator[tuple[InnerJob, InnerResult, Path | None]]:
        """Yield (job, result, adapter dir or None when the update failed) as each group finishes,
        so the caller can record progress durably before the next group starts."""
        bar = tqdm(total=len(jobs), desc=f"inner updates ({self.cfg.mode})", unit="edit")
        for group in groups_of(jobs, self.group_size):
            yield from self.train_group(group, adapter_root)
            bar.update(len(group))
        bar.close()

    def train_group(
        self, group: list[InnerJob], adapter_root: Path
    ) -> list[tuple[InnerJob, InnerResult, Path | None]]:
        """Train at most `group_size` jobs together and save each successful adapter."""
        if self.fast is None:
            (job,) = group
            result = self.reference.train_and_save(job, adapter_root / job.key)
            return [(job, result, None if result.failed else adapter_root / job.key)]
        results = self._train_fitting(group)
        return [
            (
                job,
                result,
                None if result.failed else self.fast.save(slot, adapter_root / job.key, self.model_path),
            )
            for slot, (job, result) in enumerate(zip(group, results, strict=True))
        ]

    def _train_fitting(self, group: list[InnerJob]) -> list[InnerResult]:
        """Train a group, halving the padded tokens per forward pass after each out-of-memory error.

        The results do not depend on the split (each adapter's loss is normalised over its whole
        optimizer step, not per forward pass), so a retry changes memory, not numbers beyond float
        rounding. `train()` resets the group's slots, so a retry starts clean."""
        while True:
            try:
                return self.fast.train(group)
            except torch.OutOfMemoryError as exc:
                release_memory()
                budget = self.cfg.max_tokens_per_forward
                if budget <= 1:
                    raise RuntimeError(
                        f"inner update out of memory even one row per forward pass ({exc}); lower "
                        f"lora.max_length ({self.cfg.max_length}), lora.adapters_per_batch "
                        f"({self.cfg.adapters_per_batch}) or lora.max_tokens_per_forward, or use a bigger device"
                    ) from exc
                self.cfg.max_tokens_per_forward = budget // 2
                log.warning(
                    "inner update out of memory at %d tokens per forward pass; retrying at %d",
                    budget,
                    self.cfg.max_tokens_per_forward,
                )


def group_size(lora_cfg) -> int:
    """Jobs trained together: K adapter slots on the fast path, one job at a time for reference."""
    return lora_cfg.adapters_per_batch if lora_cfg.mode == LoraMode.fast else 1


def groups_of(jobs: list[InnerJob], size: int) -> list[list[InnerJob]]:
    return [jobs[start : start + size] for start in range(0, len(jobs), size)]
