"""The inner loop's driver: InnerJobs in, trained PEFT adapter directories out.

`lora.mode=fast` keeps one resident base model with K adapter slots and trains K jobs per pass;
`lora.mode=reference` runs the paper's protocol one job at a time. Either way each job ends as a
PEFT-format adapter that any engine can serve.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from seal_runner.lora.multi_lora import MultiLoraModel
from seal_runner.lora.trainer import FastInnerTrainer, InnerJob, InnerResult, ReferenceInnerTrainer
from seal_runner.models import load_causal_lm


class InnerUpdater:
    def __init__(
        self, lora_cfg, model_path: str, tokenizer, device: str = "auto", dtype: str = "auto"
    ) -> None:
        if lora_cfg.mode not in ("fast", "reference"):
            raise ValueError(f"lora.mode must be 'fast' or 'reference', got {lora_cfg.mode!r}")
        self.cfg, self.model_path = lora_cfg, model_path
        base = load_causal_lm(model_path, dtype=dtype, device=device)
        if lora_cfg.mode == "fast":
            lora = MultiLoraModel(
                base, list(lora_cfg.target_modules), lora_cfg.adapters_per_batch, lora_cfg.rank, lora_cfg.dropout
            )
            self.fast: FastInnerTrainer | None = FastInnerTrainer(lora, tokenizer, lora_cfg)
            self.reference: ReferenceInnerTrainer | None = None
        else:
            self.fast, self.reference = None, ReferenceInnerTrainer(base, tokenizer, lora_cfg)

    @property
    def group_size(self) -> int:
        return self.cfg.adapters_per_batch if self.fast is not None else 1

    def run(
        self, jobs: list[InnerJob], adapter_root: Path
    ) -> Iterator[tuple[InnerJob, InnerResult, Path | None]]:
        """Yield (job, result, adapter dir or None when the update failed) as each group finishes,
        so the caller can record progress durably before the next group starts."""
        bar = tqdm(total=len(jobs), desc=f"inner updates ({self.cfg.mode})", unit="edit")
        for start in range(0, len(jobs), self.group_size):
            group = jobs[start : start + self.group_size]
            if self.fast is not None:
                results = self.fast.train(group)
                for slot, (job, result) in enumerate(zip(group, results, strict=True)):
                    path = (
                        None
                        if result.failed
                        else self.fast.save(slot, adapter_root / job.key, self.model_path)
                    )
                    yield job, result, path
            else:
                job = group[0]
                result = self.reference.train_and_save(job, adapter_root / job.key)
                yield job, result, None if result.failed else adapter_root / job.key
            bar.update(len(group))
        bar.close()
