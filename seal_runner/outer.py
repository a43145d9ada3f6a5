"""Outer-loop policy update: LoRA SFT on (prompt → kept self-edit), merged into a new full checkpoint.

ReSTEM's M-step in the paper: supervised finetuning of the current policy on the selected pairs with
the loss on the completion only, LoRA r 64 / α 128 on all seven projections, lr 3e-4, 2 epochs,
effective batch 10, then merge. It runs on TRL's `SFTTrainer` (prompt-completion data,
`completion_only_loss`, a PEFT `LoraConfig`), data-parallel under `accelerate launch` as TRL does it.
The merged checkpoint (model + tokenizer) is the next round's policy, so it must load in both vLLM and
`from_pretrained`; it appears at `out_dir` only once complete (written beside it and renamed), with
`sft_done.json` inside as the completion marker, so a rerun of a finished round returns the stored
stats instead of training again.

stage=cpt's continued pretraining (`train_on_texts`) keeps a small hand-written loop (`train_lora`):
its reference mode pads every row to max_length with the pads in the loss, a loss no trainer offers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import torch

from seal_runner.choices import LoraMode
from seal_runner.config import CPTConfig, PolicyTrainingConfig, SFTConfig
from seal_runner.errors import InputError
from seal_runner.lora.batching import IGNORE_INDEX, epoch_schedule, pad_batch, tokenize_sequences
from seal_runner.lora.optim import linear_schedule
from seal_runner.models import load_causal_lm, load_tokenizer, release_memory
from seal_runner.records import write_json

log = logging.getLogger(__name__)

DONE_MARKER = "sft_done.json"


Example = tuple[list[int], list[int]]  # (input_ids, labels) of one stage=cpt row


def lora_config(cfg: PolicyTrainingConfig):
    """PEFT's `LoraConfig` for a whole-model training (the policy SFT, stage=cpt)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(cfg.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )


def wrap_lora(model, cfg: PolicyTrainingConfig):
    """A PEFT LoRA wrapper around `model` (mutated in place); A initialised from `cfg.seed`."""
    from peft import get_peft_model

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(cfg.seed)
    return get_peft_model(model, lora_config(cfg))


def completion_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over labelled positions; only those rows are upcast to fp32,
    so a large vocabulary does not cost a full fp32 copy of the logits."""
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    picked = logits[:, :-1][valid].float()
    return torch.nn.functional.cross_entropy(picked, targets[valid]), int(valid.sum())


def step_groups(num_examples: int, cfg: PolicyTrainingConfig) -> list[list[list[int]]]:
    """Optimizer steps as lists of micro-batches of example indices. Order is reshuffled every epoch
    from (seed, epoch); accumulation groups never straddle epochs, so an epoch's last step may hold
    fewer micro-batches (and its last micro-batch fewer examples)."""
    micro = epoch_schedule(num_examples, cfg.epochs, cfg.batch_size, cfg.seed)
    per_epoch = math.ceil(num_examples / cfg.batch_size)
    steps = []
    for start in range(0, len(micro), per_epoch):
        epoch = micro[start : start + per_epoch]
        steps += [epoch[i : i + cfg.grad_accum] for i in range(0, len(epoch), cfg.grad_accum)]
    return steps


def pad_examples(
    examples: list[Example], pad_id: int, pad_to: int | None = None, label_pads: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A micro-batch as input_ids, attention_mask, labels: right-padded to its longest row, or to
    `pad_to`; pads are attended by nothing and carry no label unless `label_pads` (the reference's
    CPT, whose labels are its padded input ids: the pads are then predicted, as `pad_id`)."""
    input_ids, attention, _ = pad_batch([ids for ids, _ in examples], pad_id, pad_to)
    labels, _, _ = pad_batch([labels for _, labels in examples], IGNORE_INDEX, pad_to)
    if label_pads:
        labels = torch.where(attention == 0, input_ids, labels)
    return input_ids, attention, labels


def train_lora(
    peft_model,
    examples: list[Example],
    cfg: PolicyTrainingConfig,
    pad_id: int,
    pad_to: int | None = None,
    label_pads: bool = False,
) -> dict:
    """stage=cpt's loop: AdamW + linear decay over the examples; returns per-step losses (mean of
    micro-batch losses) and pre-clip gradient norms. Each micro-batch's loss is its mean over
    labelled tokens, weighted 1/len(step) in the accumulated gradient. A non-finite loss raises before
    that step's update. `pad_to` and `label_pads` are `pad_examples`'s (the reference's CPT)."""
    device = next(peft_model.parameters()).device
    steps = step_groups(len(examples), cfg)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: linear_schedule(s, len(steps), cfg.warmup_steps)
    )
    losses, grad_norms, tokens = [], [], 0
    peft_model.train()
    for step, group in enumerate(steps):
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in group:
            input_ids, attention, labels = pad_examples(
                [examples[i] for i in micro], pad_id, pad_to, label_pads
            )
            logits = peft_model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
            ).logits
            loss, count = completion_loss(logits, labels.to(device))
            (loss / len(group)).backward()
            step_loss += loss.item() / len(group)
            tokens += count
        check_finite(step_loss, step + 1, len(steps))
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)))
        optimizer.step()
        scheduler.step()
        losses.append(step_loss)
    optimizer.zero_grad(set_to_none=True)
    peft_model.eval()
    return {"steps": len(steps), "losses": losses, "grad_norms": grad_norms, "label_tokens": tokens}


def check_finite(loss: float, step: int, steps: int) -> None:
    """A NaN or infinite loss stops the training, named, before anything is published."""
    if not math.isfinite(loss):
        raise RuntimeError(
            f"non-finite SFT loss ({loss}) at optimizer step {step}/{steps}; lower sft lr or check the pairs"
        )


def pairs_digest(pairs: list[tuple[str, str]]) -> str:
    """Fingerprint of the training pairs, stored with the stats so a resume can tell if they changed."""
    return hashlib.sha256(json.dumps([list(p) for p in pairs], ensure_ascii=False).encode()).hexdigest()


def read_done(out_dir: Path) -> dict | None:
    """The stats stored by a finished `train_sft` into `out_dir`, or None if it never finished."""
    marker = Path(out_dir) / DONE_MARKER
    return json.loads(marker.read_text()) if marker.exists() else None


def merge_and_save(peft_model, tokenizer, out_dir: Path, stats: dict, started: float | None = None) -> Path:
    """Merge the adapter into the base weights and publish model + tokenizer + marker at `out_dir`.

    Everything is written into a temp dir beside `out_dir` (same filesystem), the marker last, then
    renamed into place: a crash leaves either no `out_dir` or a complete one. With `started` (a
    `time.perf_counter()` value) `stats["seconds"]` is set to the time elapsed up to the marker.
    """
    # safe_merge: refuse NaN-producing merges; a fully finetuned model has nothing to merge.
    merged = (
        peft_model.merge_and_unload(safe_merge=True)
        if hasattr(peft_model, "merge_and_unload")
        else peft_model
    )
    if getattr(merged, "is_gradient_checkpointing", False):
        merged.gradient_checkpointing_disable()
    merged.eval()
    staging = out_dir.parent / f".{out_dir.name}.sft-tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir()  # unlike mkdtemp (mode 0700), honours the umask so other readers can load it
    try:
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        if started is not None:
            stats["seconds"] = time.perf_counter() - started
        write_json(staging / DONE_MARKER, stats)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked in train_sft); a non-empty dir makes rmdir raise
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def trainer_dir(out_dir: Path) -> Path:
    """The `output_dir` TRL is given for the SFT of `out_dir`, beside it; removed after training."""
    return out_dir.parent / f".{out_dir.name}.trainer"


def train_sft(
    model_path: str,
    pairs: list[tuple[str, str]],
    out_dir: Path,
    cfg: SFTConfig,
    device: str = "auto",
    dtype: str = "auto",
) -> dict:
    """SFT `model_path` on (formatted prompt, completion) pairs; save the merged policy at `out_dir`.

    Returns stats: examples, dropped, steps, losses (per optimizer step), final_loss, grad_norms,
    label_tokens (labelled positions over all epochs), seconds (load + train + merge + save),
    config, pairs_sha256, processes, resumed. A finished `out_dir` (marker present) is not
    retrained: its stored stats come back with `resumed: True` (a warning is logged if the pairs
    differ from the stored run's). One writer per `out_dir` is assumed. With several processes
    (`sft.num_processes`) training runs under `accelerate launch`, one process per GPU. `cfg.dtype`,
    when set, replaces `dtype` (the model's): the weights are loaded, trained, merged and saved in it.
    """
    out_dir = Path(out_dir)
    dtype = cfg.dtype or dtype
    digest = pairs_digest(pairs)
    done = read_done(out_dir)
    if done is not None:
        if done.get("pairs_sha256") != digest:
            log.warning("%s was trained on other pairs than these; keeping the finished checkpoint", out_dir)
        return {**done, "resumed": True}
    if not pairs:
        raise ValueError("train_sft got no (prompt, completion) pairs")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists without {DONE_MARKER}; not overwriting it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out_dir.parent.glob(f".{out_dir.name}.sft-tmp-*"), trainer_dir(out_dir)]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-save or mid-training
    processes = sft_processes(cfg.num_processes)
    if processes > 1:
        return launch_sft(model_path, pairs, out_dir, cfg, dtype, processes)
    return fit_sft(model_path, pairs, out_dir, cfg, device, dtype)


def launch_sft(
    model_path: str, pairs: list[tuple[str, str]], out_dir: Path, cfg: SFTConfig, dtype: str, processes: int
) -> dict:
    """`fit_sft` as `processes` data-parallel processes: the job goes to a file beside the output and
    `accelerate launch --multi_gpu --num_processes N -m seal_runner.sft_launch <job>` runs it (see
    that module); rank 0 publishes the checkpoint with its marker, whose stats are returned, so the
    caller sees the same result as an in-process `fit_sft`."""
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


def sft_processes(requested: int) -> int:
    """`sft.num_processes`: 0 = one per visible GPU (1 without a GPU), else as given."""
    if requested < 0:
        raise InputError(f"sft.num_processes={requested} must be >= 0 (0 = one per visible GPU)")
    return requested or max(1, torch.cuda.device_count())


def fit_sft(
    model_path: str, pairs: list[tuple[str, str]], out_dir: Path, cfg: SFTConfig, device: str, dtype: str
) -> dict:
    """The training itself, on TRL's `SFTTrainer`, in this process: alone, or as one process of an
    `accelerate launch` (the trainer runs data-parallel from the launcher's environment, and only
    the main process writes the merged checkpoint).

    The data is TRL's prompt-completion format with `completion_only_loss`: TRL tokenises the prompt
    as the engines do (the tokenizer's own special tokens), appends EOS to the completion (for chat
    models the end-of-turn token, which teaches the policy to stop), labels the completion only, cuts
    rows at `max_length` and drops a pair whose prompt alone fills it (counted as `dropped`).
    A step's loss is the mean over its labelled tokens. With N processes each takes 1/N of every
    step (`per_process_batches`), so the effective batch, and the trajectory up to float summation
    order, is the single process's."""
    import datasets
    from transformers import set_seed
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    start = time.perf_counter()
    datasets.disable_progress_bars()  # the console keeps the run's own bars
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batch_size, grad_accum = per_process_batches(cfg.batch_size, cfg.grad_accum, world)
    tokenizer = load_tokenizer(model_path)
    args = TRLConfig(
        output_dir=str(trainer_dir(out_dir)),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch",
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=cfg.max_length,
        completion_only_loss=True,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN is reported as such and stops the run (check_finite)
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=False,
        fp16=False,  # the weights train in the dtype they were loaded in
    )
    set_seed(cfg.seed)  # LoRA's A matrices are drawn when the trainer wraps the model
    trainer = SFTTrainer(
        model=load_causal_lm(model_path, dtype=dtype, device=device),
        args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
    )
    examples = len(trainer.train_dataset)
    if not examples:
        raise ValueError(
            f"all {len(pairs)} pairs were dropped: every prompt fills max_length={cfg.max_length}"
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it prints every log dict
    history = step_history()
    trainer.add_callback(history)
    try:
        trainer.train()
    finally:  # TRL saves nothing there (save_strategy=no) but creates the dir
        shutil.rmtree(args.output_dir, ignore_errors=True)
    labelled = sum(sum(label != -100 for label in row) for row in trainer.train_dataset["labels"])
    stats = {
        "model_path": str(model_path),
        "examples": examples,
        "dropped": len(pairs) - examples,
        "steps": trainer.state.global_step,
        "losses": history.losses,
        "grad_norms": history.grad_norms,
        "label_tokens": labelled * cfg.epochs,
        "final_loss": history.losses[-1],
        "config": {
            **asdict(cfg),
            "target_modules": list(cfg.target_modules),
            "modules_to_save": list(cfg.modules_to_save),
        },
        "pairs_sha256": pairs_digest(pairs),
        "processes": world,
        "resumed": False,
    }
    if trainer.accelerator.is_main_process:
        merge_and_save(trainer.model, tokenizer, Path(out_dir), stats, started=start)  # sets stats["seconds"]
    trainer.accelerator.wait_for_everyone()
    del trainer
    release_memory()  # the next round's engines load the new policy in this process
    return stats


def step_history():
    """A trainer callback that collects each optimizer step's logged loss and pre-clip gradient norm,
    stops the training at the first non-finite loss (`check_finite`), before anything is published,
    and shows one progress bar of steps with the latest loss (the trainer's own printer, which writes
    every log dict to the console, is removed in `fit_sft`). Built here, not at import: transformers'
    trainer modules take seconds to import, and every run imports this module at start-up
    (`check_devices`)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class StepHistory(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.grad_norms: list[float] = []
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs) -> None:
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, desc="policy SFT", unit="step")

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if logs and "loss" in logs:
                check_finite(float(logs["loss"]), state.global_step, state.max_steps)
                self.losses.append(float(logs["loss"]))
                self.grad_norms.append(float(logs.get("grad_norm", math.nan)))
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{self.losses[-1]:.3f}")
                    self.bar.update(state.global_step - self.bar.n)

        def on_train_end(self, args, state, control, **kwargs) -> None:
            if self.bar is not None:
                self.bar.close()

    return StepHistory()


def check_sft_targets(target_modules) -> None:
    """TRL's SFT computes its loss from `lm_head.weight` directly, so a LoRA there would never train
    (TRL refuses it when the trainer is built, after a round's work): name the fix up front."""
    if "lm_head" in target_modules:
        raise InputError(
            "sft.target_modules includes lm_head, which TRL's SFT cannot train through a LoRA; "
            "train it in full with sft.modules_to_save=[lm_head] instead"
        )


def per_process_batches(batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """(rows per micro-batch, micro-batches per step) for each of `world` processes, so that they
    together take the single process's `batch_size x grad_accum` rows per step: the accumulation is
    split when it divides, else the micro-batch."""
    if grad_accum % world == 0:
        return batch_size, grad_accum // world
    if batch_size % world == 0:
        return batch_size // world, grad_accum
    raise InputError(
        f"sft.batch_size={batch_size} x sft.grad_accum={grad_accum} cannot be shared by {world} processes "
        "(sft.num_processes): make one of them a multiple of it"
    )


def merge_adapter(
    model_path: str, adapter_dir: Path, out_dir: Path, device: str = "auto", dtype: str = "auto"
) -> Path:
    """Fold a trained inner-loop adapter into `model_path` and publish the result at `out_dir`
    (atomically, with the same completion marker as `train_sft`), so sequential self-edits
    (stage=continual) each start from the previous update. A finished `out_dir` is kept as is."""
    from peft import PeftModel

    out_dir = Path(out_dir)
    if read_done(out_dir) is not None:
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = PeftModel.from_pretrained(
        load_causal_lm(model_path, dtype=dtype, device=device), str(adapter_dir)
    )
    stats = {"model_path": str(model_path), "adapter": str(adapter_dir)}
    return merge_and_save(model, load_tokenizer(model_path), out_dir, stats, started=started)


def train_on_texts(
    model_path: str,
    texts: list[str],
    out_dir: Path,
    cfg: CPTConfig,
    device: str = "auto",
    dtype: str = "auto",
) -> dict:
    """Continued pretraining on plain texts, every token labelled: a LoRA merged into a new
    checkpoint, or all weights with `cfg.full_finetune`. The CPT experiment trains one such model on
    the pooled self-edits of many documents. A finished `out_dir` is kept and its stats returned.
    `cfg.dtype`, when set, replaces `dtype`, as in `train_sft`.

    `cfg.mode=fast`: EOS appended, rows cut at max_length and padded to their micro-batch's longest,
    pads masked. `cfg.mode=reference`, the reference's CPT (knowledge-incorporation/src/query/CPT.py
    sends the pool to src/inner/TTT_server.py): no EOS appended, rows cut at and padded to
    max_length with EOS (its pad token), pads labelled (`cfg.label_pads`), so each micro-batch's loss
    is its mean over rows x (max_length - 1) positions. The reference's Trainer divides a step's
    summed loss by the step's labelled positions; this mean of micro-batch means is the same except
    in an epoch's last step when its last micro-batch is short."""
    out_dir = Path(out_dir)
    dtype = cfg.dtype or dtype
    done = read_done(out_dir)
    if done is not None:
        return {**done, "resumed": True}
    if not texts:
        raise ValueError("train_on_texts got no texts")
    reference = cfg.mode == LoraMode.reference
    if reference and cfg.max_length is None:
        raise InputError(
            "cpt.mode=reference pads every text to cpt.max_length; set it (the reference's 2048)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tokenizer = load_tokenizer(model_path)
    ids = tokenize_sequences(tokenizer, texts, cfg.max_length, append_eos=not reference)
    examples = [(x, x) for x in ids]
    model = load_causal_lm(model_path, dtype=dtype, device=device)
    if cfg.full_finetune:
        model.requires_grad_(True)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model = wrap_lora(model, cfg)
    if reference:
        if tokenizer.eos_token_id is None:
            raise ValueError("cpt.mode=reference pads with EOS, and this tokenizer has none")
        trained = train_lora(
            model, examples, cfg, tokenizer.eos_token_id, pad_to=cfg.max_length, label_pads=cfg.label_pads
        )
    else:
        trained = train_lora(model, examples, cfg, tokenizer.pad_token_id)
    stats = {
        "model_path": str(model_path),
        "texts": len(texts),
        "full_finetune": cfg.full_finetune,
        "mode": str(cfg.mode),
        **trained,
        "final_loss": trained["losses"][-1],
        "resumed": False,
    }
    merge_and_save(model, tokenizer, out_dir, stats, started=start)
    return stats
