"""Inner-loop LoRA updates: the fast multi-adapter trainer and the paper's reference protocol.

Both take `InnerJob`s (one self-edit's training sequences + a seed) and leave a trained adapter
per job; both report the same `InnerResult`. A job may instead carry pre-tokenised `TrainRow`s with
their own label masks (ARC trains on output tokens only) and its own learning rate and epoch count
(ARC self-edits choose them); the fast trainer handles those, masking each adapter out of the
optimizer once its own schedule ends. `FastInnerTrainer` trains up to K jobs at once over
one resident base model (adapters reset in place, never re-wrapped); `ReferenceInnerTrainer`
wraps the base with a fresh PEFT adapter per job and trains it alone at batch size 1 on rows
padded to `max_length` with the pads in the loss, exactly as the reference implementation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seal_runner.choices import LossNormalization
from seal_runner.lora.batching import (
    TrainRow,
    epoch_schedule,
    pad_batch,
    pad_rows,
    token_losses,
    tokenize_sequences,
)
from seal_runner.lora.multi_lora import AdapterSpec, MultiLoraModel, lora_A_init
from seal_runner.lora.optim import StackedAdamW, linear_schedule, lr_schedule
from seal_runner.models import forward_precision


def _length_buckets(rows: list[tuple[int, TrainRow]], max_tokens: int) -> list[list[tuple[int, TrainRow]]]:
    """Split rows, shortest first, into batches whose padded size stays within `max_tokens`."""
    buckets: list[list[tuple[int, TrainRow]]] = []
    for item in sorted(rows, key=lambda r: len(r[1].input_ids)):
        current = buckets[-1] if buckets else None
        if current is not None and (len(current) + 1) * len(item[1].input_ids) <= max_tokens:
            current.append(item)
        else:
            buckets.append([item])
    return buckets


@dataclass
class InnerJob:
    """One inner update. `rows` (token ids + labels) replace `sequences` when given; `lr`/`epochs`
    override the LoRA config's (None = config value; 0 epochs = the untrained adapter is kept)."""

    key: str
    sequences: list[str]
    seed: int
    rows: list[TrainRow] | None = None
    lr: float | None = None
    epochs: int | None = None


@dataclass
class InnerResult:
    key: str
    steps: int
    train_tokens: int
    seconds: float  # wall time of the group this job trained in, divided by the group size
    losses: list[float] = field(default_factory=list)
    failed: str | None = None  # reason when the update was abandoned (e.g. non-finite loss)

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


class FastInnerTrainer:
    """K adapters per forward/backward; unpadded batches; per-adapter AdamW, schedule and clipping."""

    def __init__(self, lora_model: MultiLoraModel, tokenizer, cfg) -> None:
        self.lora = lora_model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.device = next(lora_model.model.parameters()).device
        self.spec = AdapterSpec(rank=cfg.rank, alpha=cfg.alpha)

    def train(self, jobs: list[InnerJob]) -> list[InnerResult]:
        """Train `jobs` into slots 0..len(jobs)-1 (at most K); the adapters stay there for export."""
        if not 0 < len(jobs) <= self.lora.num_adapters:
            raise ValueError(f"got {len(jobs)} jobs for {self.lora.num_adapters} adapter slots")
        cfg, start = self.cfg, time.perf_counter()
        for slot, job in enumerate(jobs):
            self.lora.reset(slot, self.spec, init_seed(cfg, job))
        data = [self._rows(j) for j in jobs]
        schedules = [
            epoch_schedule(len(d), cfg.epochs if j.epochs is None else j.epochs, cfg.batch_size, j.seed)
            for d, j in zip(data, jobs, strict=True)
        ]
        peak_lrs = [cfg.lr if j.lr is None else j.lr for j in jobs]
        multiplier = lr_schedule(cfg.lr_schedule)
        results = [
            InnerResult(j.key, steps=len(s), train_tokens=0, seconds=0.0)
            for j, s in zip(jobs, schedules, strict=True)
        ]
        optimizer = StackedAdamW(self.lora.parameters(), weight_decay=cfg.weight_decay)
        alive = [True] * len(jobs)
        model = self.lora.model.train()
        for step in range(max(len(s) for s in schedules)):  # 0 when every job trains 0 epochs
            members = [k for k in range(len(jobs)) if alive[k] and step < len(schedules[k])]
            if not members:
                break
            rows = [(k, data[k][i]) for k in members for i in schedules[k][step]]
            step_loss = self._accumulate_gradients(model, rows, optimizer)
            for k in members:
                if not math.isfinite(step_loss[k]):
                    alive[k] = False
                    results[k].failed = f"non-finite loss at step {step}"
                    self._zero_slot_grads(k)
                    continue
                results[k].losses.append(step_loss[k])
                results[k].train_tokens += sum(len(row.input_ids) - 1 for slot, row in rows if slot == k)
            optimizer.clip_grad_norm_(cfg.max_grad_norm)
            lrs = torch.tensor(
                [
                    lr * multiplier(step, len(s), cfg.warmup_steps)
                    for lr, s in zip(peak_lrs, schedules, strict=True)
                ]
                + [0.0] * (self.lora.num_adapters - len(jobs))
            )
            active = torch.zeros(self.lora.num_adapters, dtype=torch.bool)
            active[[k for k in members if alive[k]]] = True
            optimizer.step(lrs, active)
        optimizer.zero_grad()
        model.eval()
        for k, result in enumerate(results):
            if result.failed:
                self.lora.clear(k)
            result.seconds = (time.perf_counter() - start) / len(jobs)
        return results

    def _rows(self, job: InnerJob) -> list[TrainRow]:
        if job.rows is not None:
            return [row.truncated(self.cfg.max_length) for row in job.rows]
        ids = tokenize_sequences(self.tokenizer, job.sequences, self.cfg.max_length, self.cfg.append_eos)
        return [TrainRow.all_tokens(row) for row in ids]

    def _accumulate_gradients(self, model, rows: list[tuple[int, TrainRow]], optimizer) -> dict[int, float]:
        """One optimizer step's gradients for every adapter in `rows` (slot, training row).

        Rows are sorted by length and cut into forward passes of at most `max_tokens_per_forward`
        padded tokens, so short self-edit lines are not padded to a passage's length; each adapter's
        loss is normalised over all of its rows in the step, so the accumulated gradient is exactly
        that of one big batch.
        """
        optimizer.zero_grad()
        denominators: dict[int, float] = {}
        for slot, row in rows:
            per_row = (
                self.cfg.max_length - 1
                if self.cfg.loss_normalization == LossNormalization.reference
                else row.num_targets
            )
            denominators[slot] = denominators.get(slot, 0) + per_row
        step_loss = dict.fromkeys(denominators, 0.0)
        for chunk in _length_buckets(rows, self.cfg.max_tokens_per_forward):
            slots = torch.tensor([slot for slot, _ in chunk])
            input_ids, attention, labels = pad_rows([row for _, row in chunk], self.tokenizer.pad_token_id)
            with self.lora.router.route(slots), forward_precision(self.device, self.cfg.autocast):
                logits = model(
                    input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
                ).logits
            losses, _ = token_losses(logits, labels.to(self.device))
            weights = torch.tensor(
                [1.0 / max(1, denominators[slot]) for slot, _ in chunk], device=self.device
            )
            per_row = losses.sum(dim=1) * weights
            per_row.sum().backward()
            for (slot, _), value in zip(chunk, per_row.tolist(), strict=True):
                step_loss[slot] += value
        return step_loss

    @torch.no_grad()
    def _zero_slot_grads(self, slot: int) -> None:
        for p in self.lora.parameters():
            if p.grad is not None:
                p.grad[slot] = 0.0

    def save(self, slot: int, directory: str | Path, base_name: str) -> Path:
        return self.lora.save_peft(slot, directory, base_name)


class ReferenceInnerTrainer:
    """The reference implementation's update: fresh PEFT wrapper, bs 1, pad to max_length, pads labelled.

    `label_pads=false` keeps everything but masks the pads, so a benchmark can tell the padding
    defect's effect on accuracy apart from the fast path's engineering.
    """

    def __init__(self, base_model, tokenizer, cfg) -> None:
        self.base = base_model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.device = next(base_model.parameters()).device

    def train_and_save(self, job: InnerJob, directory: str | Path) -> InnerResult:
        from peft import LoraConfig, get_peft_model

        cfg, start = self.cfg, time.perf_counter()
        if job.rows is not None or job.lr is not None or job.epochs is not None:
            raise ValueError(
                f"job {job.key}: lora.mode=reference trains text sequences with the config's lr and "
                "epochs only (knowledge domain); use lora.mode=fast for ARC test-time training"
            )
        torch.manual_seed(job.seed)
        peft_model = get_peft_model(
            self.base,
            LoraConfig(
                r=cfg.rank,
                lora_alpha=cfg.alpha,
                lora_dropout=cfg.dropout,
                target_modules=list(cfg.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
        seed_lora_A(peft_model, init_seed(cfg, job))
        data = tokenize_sequences(self.tokenizer, job.sequences, cfg.max_length, append_eos=False)
        schedule = epoch_schedule(len(data), cfg.epochs, cfg.batch_size, job.seed)
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: linear_schedule(s, len(schedule), cfg.warmup_steps)
        )
        result = InnerResult(job.key, steps=len(schedule), train_tokens=0, seconds=0.0)
        peft_model.train()
        for batch in schedule:
            rows = [data[i] for i in batch]
            input_ids, attention, labels = pad_batch(
                rows, self.tokenizer.pad_token_id, pad_to=cfg.max_length, label_pads=cfg.label_pads
            )
            with forward_precision(self.device, cfg.autocast):
                out = peft_model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention.to(self.device),
                    labels=labels.to(self.device),
                )
            if not math.isfinite(out.loss.item()):
                result.failed = "non-finite loss"
                break
            optimizer.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            result.losses.append(out.loss.item())
            result.train_tokens += int(labels.numel())
        peft_model.eval()
        if not result.failed:
            peft_model.save_pretrained(str(directory))
        self.base = peft_model.unload()  # the reference builds a new wrapper per request
        result.seconds = time.perf_counter() - start
        return result


def init_seed(cfg, job: InnerJob) -> int:
    """The seed of a job's starting LoRA A: `lora.init_seed` when set, so every adapter starts from the
    same A (the reference's ARC TTT, few-shot/arclib/update_model.py: `TTT.reset_lora` copies back the
    A that PEFT drew when the one wrapper was built, and zeroes B, before each update), else the job's
    own seed."""
    return job.seed if cfg.init_seed is None else cfg.init_seed


@torch.no_grad()
def seed_lora_A(peft_model, seed: int) -> None:
    """Re-draw every LoRA A as `MultiLoraModel.reset` does for the same seed (B stays zero).

    PEFT draws A from the global RNG in the same distribution; drawing it from the job's seed in
    the fast path's order makes the two paths start from one adapter, so they can be compared
    update for update.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in peft_model.modules():
        lora_A = getattr(module, "lora_A", None)
        if isinstance(lora_A, torch.nn.ModuleDict) and "default" in lora_A:
            weight = lora_A["default"].weight
            weight.copy_(lora_A_init(weight.shape[0], weight.shape[1], generator))
