"""GPU check: what the inner loop costs at the paper's model sizes, in one run of at most ~8 minutes.

Needs one CUDA GPU (an H100/H200), torch, transformers, peft and this package; no vLLM, no weights,
no network. The models are random-initialised from the architecture configs below and trained
through seal_runner's own inner loop (`InnerUpdater`, adapters saved as a run saves them), with the
LoRA settings `seal-run` composes from this checkout's conf/ for the paper presets:

  knowledge  Qwen2.5-7B architecture, bf16; one self-edit = 20 sequences x 10 epochs (19 implication
             lines of 24-64 tokens + the 192-token passage, ~50 tokens a sequence as in the method
             notes). Seconds per edit for `lora=reference` (the paper's protocol: batch 1, every row
             padded to 2048, one adapter at a time) and the fast path (`lora=default`) at K = 1, 4, 8
             adapters per batch; the model is built afresh per measurement, so each peak GPU memory
             (torch.cuda.max_memory_allocated) includes the bf16 weights.
  round      an ESTIMATE computed from the measured parts, not a measurement: the paper's ReSTEM round
             (experiment=paper/knowledge_restem: 50 contexts x 5 self-edits x 3 inner seeds = 750 inner
             updates) x each path's measured seconds per edit. Inner updates only: self-edit sampling,
             answering the probe questions with each adapter, grading and the outer SFT come on top.
  arc        Llama-3.2-1B architecture, bf16, experiment=paper/arc_fewshot's `lora=arc_ttt` (r128 a16 on
             q/v/gate/down/up, batch 2, K = 8 self-edits trained together, 16384 tokens per forward):
             seconds per optimizer step at 2048 and 4096 tokens a sequence (the method notes put ARC
             examples at ~1.5k tokens; lora.max_length keeps them under 8192), and the implied cost of
             one self-edit at the paper's 375-step cap.

Every measurement warms up on a short job first and is timed over whole groups of edits. Text is
replaced by token ids (`IdTokenizer`): the cost depends only on the token counts, which are fixed.

Architectures: the compute-relevant keys of the public config.json of Qwen/Qwen2.5-7B and
meta-llama/Llama-3.2-1B-Instruct on the Hugging Face hub (the ids in conf/model/). The method notes
(/work/shared/docs/seal-method.md §7) give only Qwen2.5-7B's ~7.07B matmul parameters, which these
shapes reproduce (printed as `matmul params`; Llama-3.2-1B's come to ~1.24B).

Budget: `--max-seconds` (default 480) is checked before each measurement and after each timed group.
Measurements due to start past it are skipped and listed under `skipped`; one that runs over stops
after its current group, so a run ends at most one model build, warm-up and group past it (about a
minute for the reference edit on an H100). The order puts the headline first: fast K=8, reference,
ARC, then the other K values. `--smoke` shrinks both models to 2 layers / hidden 64 and every size
to seconds, on the CPU when there is no GPU (tests/test_gpu_check.py runs it).

  python scripts/gpu_check.py --out outputs/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import peft
import torch
import transformers
from bench_inner_loop import peak_cuda_gb, timed_updates
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from seal_runner.config import register_configs
from seal_runner.lora.batching import TrainRow
from seal_runner.lora.trainer import InnerJob
from seal_runner.lora.updater import InnerUpdater, groups_of
from seal_runner.models import release_memory, torch_dtype

REPO = Path(__file__).resolve().parents[1]

QWEN2_5_7B = {  # Qwen/Qwen2.5-7B config.json
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 131072,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "use_sliding_window": False,
}
LLAMA3_2_1B = {  # meta-llama/Llama-3.2-1B-Instruct config.json
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
    },
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
CONFIG_CLASSES = {"qwen2": Qwen2Config, "llama": LlamaConfig}
KNOWLEDGE_PRESET = "experiment=paper/knowledge_restem"
ARC_PRESET = "experiment=paper/arc_fewshot"


@dataclass(frozen=True)
class Workload:
    """What the measurements train: `PAPER` on the GPU, `SMOKE` shrunk to seconds on a CPU."""

    shape: dict = field(default_factory=dict)  # overrides of both architectures (empty: the real ones)
    sequences: int = 20  # per self-edit: implication lines + the passage appended last
    epochs: int = 10
    line_tokens: tuple[int, int] = (24, 64)  # a line's token count, drawn uniformly
    passage_tokens: int = 192
    max_length: int = 2048  # lora.max_length: the reference pads every row to it
    groups: int = 2  # timed groups per knowledge measurement (K edits fast, 1 edit reference)
    k_values: tuple[int, ...] = (8, 4, 1)  # the first is measured first, before the reference
    arc_lengths: tuple[int, ...] = (2048, 4096)
    arc_steps: int = 8  # timed optimizer steps per ARC length


PAPER = Workload()
SMOKE = Workload(
    shape={
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 512,
    },
    sequences=4,
    epochs=2,
    line_tokens=(4, 12),
    passage_tokens=24,
    max_length=48,
    groups=1,
    arc_lengths=(64,),
    arc_steps=2,
)


class IdTokenizer:
    """Text of space-separated token ids -> those ids; pad = EOS = the last id.

    The trainers only call `tokenizer(text)["input_ids"]`, `pad_token_id` and `eos_token_id`, and the
    cost depends on token counts alone, so this stands in for a real tokenizer (whose files are not
    on the machine) and fixes every sequence's length exactly."""

    def __init__(self, vocab_size: int) -> None:
        self.pad_token_id = self.eos_token_id = vocab_size - 1

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [int(token) for token in text.split()]}


class Budget:
    """`--max-seconds`: measurements start only while time is left; the rest are named as skipped."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + seconds
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def admit(self, name: str) -> bool:
        if self.expired():
            self.skipped.append(name)
            print(f"[{self.elapsed():5.0f}s] skipped {name}: --max-seconds reached", flush=True)
            return False
        return True


def compose_config(*overrides: str) -> DictConfig:
    """What `seal-run <overrides>` composes from this checkout's conf/."""
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def build_model(arch: dict, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A random-initialised causal LM of `arch`, created directly on `device` (a 7B never touches
    host memory)."""
    config = CONFIG_CLASSES[arch["model_type"]].from_dict(
        {k: v for k, v in arch.items() if k != "model_type"}
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def matmul_params(model: torch.nn.Module) -> int:
    """Weights of every nn.Linear, the LM head included: what a token position multiplies through."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def random_ids(rng: random.Random, count: int, vocab_size: int) -> list[int]:
    return [rng.randrange(vocab_size - 1) for _ in range(count)]  # never the pad / EOS id


def selfedit_jobs(count: int, w: Workload, vocab_size: int, first_seed: int) -> list[InnerJob]:
    """Self-edits of the paper's shape: `w.sequences - 1` lines, then the passage (seal-method §2)."""
    rng = random.Random(first_seed)
    jobs = []
    for seed in range(first_seed, first_seed + count):
        lengths = [rng.randint(*w.line_tokens) for _ in range(w.sequences - 1)] + [w.passage_tokens]
        texts = [" ".join(map(str, random_ids(rng, n, vocab_size))) for n in lengths]
        jobs.append(InnerJob(f"edit{seed:05d}", texts, seed=seed))
    return jobs


def arc_jobs(count: int, length: int, steps: int, batch_size: int, vocab_size: int, first_seed: int):
    """TTT jobs of `steps` optimizer steps (one epoch of `steps x batch_size` rows of `length` tokens)."""
    rng = random.Random(first_seed)
    return [
        InnerJob(
            f"arc{seed:05d}",
            [],
            seed=seed,
            rows=[
                TrainRow.all_tokens(random_ids(rng, length, vocab_size)) for _ in range(steps * batch_size)
            ],
            epochs=1,
        )
        for seed in range(first_seed, first_seed + count)
    ]


class GPUCheck:
    def __init__(self, w: Workload, device: str, budget: Budget) -> None:
        self.w, self.device, self.budget = w, device, budget
        self.dtype = torch_dtype("auto", device)
        self.architectures: dict[str, dict] = {}

    def updater(self, name: str, arch: dict, lora_cfg, base_name: str) -> InnerUpdater:
        """A fresh model of `arch` under an InnerUpdater; GPU peak memory counted from before it."""
        release_memory()
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        arch = {**arch, **self.w.shape}
        model = build_model(arch, self.device, self.dtype)
        self.architectures[name] = {**arch, "matmul_params": matmul_params(model)}
        return InnerUpdater(lora_cfg, base_name, IdTokenizer(arch["vocab_size"]), model=model)

    def knowledge(self, lora_cfg, base_name: str) -> dict:
        """Warm up on one short group, then time `w.groups` groups of full self-edits."""
        w = self.w
        updater = self.updater("qwen2.5-7b", QWEN2_5_7B, lora_cfg, base_name)
        size, vocab = updater.group_size, self.architectures["qwen2.5-7b"]["vocab_size"]
        warmup = selfedit_jobs(size, replace(w, sequences=2), vocab, first_seed=90_000)
        jobs = selfedit_jobs(size * w.groups, w, vocab, first_seed=0)
        done, seconds = [], 0.0
        with tempfile.TemporaryDirectory() as tmp:
            timed_updates(updater, warmup, Path(tmp), self.device)
            for group in groups_of(jobs, size):
                group_done, group_seconds = timed_updates(updater, group, Path(tmp), self.device)
                done, seconds = done + group_done, seconds + group_seconds
                if self.budget.expired():
                    break
        results = [r for _, r, _ in done]
        return {
            "lora": OmegaConf.to_container(lora_cfg, resolve=True, enum_to_str=True),
            "adapters_per_batch": size,
            "edits": len(done),
            "stopped_by_budget": len(done) < len(jobs),
            "seconds": seconds,
            "seconds_per_edit": seconds / len(done),
            "train_seconds_per_edit": sum(r.seconds for r in results) / len(done),
            "steps_per_edit": sum(r.steps for r in results) / len(done),
            "train_tokens_per_edit": sum(r.train_tokens for r in results) / len(done),
            "failed_edits": sum(1 for r in results if r.failed),
            "max_tokens_per_forward": updater.cfg.max_tokens_per_forward,  # lower after an OOM retry
            "peak_cuda_gb": peak_cuda_gb(self.device),
        }

    def arc(self, cfg: DictConfig) -> dict:
        """One model for every sequence length; per length a 1-step warm-up, then one timed group."""
        w, lora = self.w, cfg.lora
        updater = self.updater("llama-3.2-1b", LLAMA3_2_1B, lora, cfg.model.name_or_path)
        k, vocab = updater.group_size, self.architectures["llama-3.2-1b"]["vocab_size"]
        out = {}
        with tempfile.TemporaryDirectory() as tmp:
            for length in w.arc_lengths:
                if not self.budget.admit(f"arc L={length}"):
                    continue
                warmup = arc_jobs(1, length, 1, lora.batch_size, vocab, first_seed=90_000)
                timed_updates(updater, warmup, Path(tmp), self.device)
                if self.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()  # the weights stay allocated, so they count
                jobs = arc_jobs(k, length, w.arc_steps, lora.batch_size, vocab, first_seed=0)
                done, seconds = timed_updates(updater, jobs, Path(tmp), self.device)
                train = sum(r.seconds for _, r, _ in done)  # per job: its group's time / K
                per_step = train / w.arc_steps
                out[f"L={length}"] = {
                    "sequence_length": length,
                    "adapters_per_batch": k,
                    "batch_size": lora.batch_size,
                    "steps": w.arc_steps,
                    "tokens_per_step": k * lora.batch_size * length,
                    "seconds_per_step": per_step,
                    "seconds_per_adapter_step": per_step / k,
                    "save_seconds": seconds - train,
                    "step_cap": cfg.domain.step_cap,
                    "estimated_seconds_per_capped_edit": cfg.domain.step_cap * per_step / k,
                    "failed_adapters": sum(1 for _, r, _ in done if r.failed),
                    "max_tokens_per_forward": updater.cfg.max_tokens_per_forward,
                    "peak_cuda_gb": peak_cuda_gb(self.device),
                }
                print(f"[{self.budget.elapsed():5.0f}s] arc L={length}: {per_step:.3f} s/step", flush=True)
        return {"lora": OmegaConf.to_container(lora, resolve=True, enum_to_str=True), "lengths": out}


def round_estimate(restem, paths: dict[str, dict]) -> dict:
    updates = restem.contexts_per_round * restem.samples_per_context * restem.inner_seeds
    return {
        "note": "ESTIMATE computed from measured parts, not measured: updates x measured seconds per edit; "
        "inner updates only (no self-edit sampling, probe answering, grading or outer SFT)",
        "formula": f"{restem.contexts_per_round} contexts x {restem.samples_per_context} self-edits x "
        f"{restem.inner_seeds} inner seeds = {updates} updates x seconds_per_edit",
        "updates": updates,
        "gpu_hours": {name: updates * m["seconds_per_edit"] / 3600 for name, m in paths.items()},
    }


def print_summary(report: dict) -> None:
    print(f"\n{report['device']} ({report['dtype']}), elapsed {report['elapsed_seconds']:.0f} s")
    for name, arch in report["architectures"].items():
        print(f"{name}: {arch['matmul_params'] / 1e9:.3f}B matmul params")
    w, paths = report["workload"], report["knowledge"]
    print(f"knowledge inner update, {w['sequences']} sequences x {w['epochs']} epochs per edit:")
    print(f"  {'path':<13}{'s/edit':>9}{'train s/edit':>14}{'peak GB':>9}{'edits':>7}{'speed-up':>10}")
    reference = paths.get("reference")
    for name, m in paths.items():
        speedup = f"{reference['seconds_per_edit'] / m['seconds_per_edit']:.1f}x" if reference else "-"
        peak = f"{m['peak_cuda_gb']:.1f}" if m["peak_cuda_gb"] is not None else "-"
        print(
            f"  {name:<13}{m['seconds_per_edit']:9.2f}{m['train_seconds_per_edit']:14.2f}{peak:>9}"
            f"{m['edits']:7d}{speedup:>10}"
        )
    estimate = report["round_estimate"]
    print(f"ReSTEM round, {estimate['formula']} (ESTIMATE from the measured s/edit, inner updates only):")
    for name, hours in estimate["gpu_hours"].items():
        print(f"  {name:<13}{hours:9.2f} GPU-h")
    if report["arc"]:
        lora = report["arc"]["lora"]
        print(
            f"ARC TTT step, r{lora['rank']} a{lora['alpha']:g} {','.join(lora['target_modules'])}, "
            f"K={lora['adapters_per_batch']} x batch {lora['batch_size']}:"
        )
        for name, m in report["arc"]["lengths"].items():
            peak = f", peak {m['peak_cuda_gb']:.1f} GB" if m["peak_cuda_gb"] is not None else ""
            print(
                f"  {name:<8} {m['seconds_per_step']:.3f} s/step ({m['seconds_per_adapter_step']:.3f} per adapter)"
                f"{peak}; a {m['step_cap']}-step self-edit ~{m['estimated_seconds_per_capped_edit']:.0f} s (estimate)"
            )
    print(f"skipped: {', '.join(report['skipped']) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-seconds", type=float, default=480.0, help="skip measurements past this")
    parser.add_argument(
        "--smoke", action="store_true", help="2-layer / hidden-64 models, seconds; CPU if no GPU"
    )
    parser.add_argument("--out", help="also write the report as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        parser.error(
            "no CUDA GPU visible (torch.cuda.is_available() is False); this check measures an H100/H200. "
            "--smoke runs the same measurements on tiny models, on the CPU."
        )
    budget = Budget(args.max_seconds)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    w = SMOKE if args.smoke else PAPER
    check = GPUCheck(w, device, budget)
    smoke_lora = [f"lora.epochs={w.epochs}", f"lora.max_length={w.max_length}"] if args.smoke else []
    knowledge_cfg = compose_config(KNOWLEDGE_PRESET, *smoke_lora)  # lora=reference: the paper's protocol
    base_name = knowledge_cfg.model.name_or_path

    def fast(k: int):
        return lambda: check.knowledge(
            compose_config(
                KNOWLEDGE_PRESET, "lora=default", f"lora.adapters_per_batch={k}", *smoke_lora
            ).lora,
            base_name,
        )

    first, *rest = w.k_values
    plan = [
        (f"fast K={first}", fast(first)),
        ("reference", lambda: check.knowledge(knowledge_cfg.lora, base_name)),
        ("arc", lambda: check.arc(compose_config(ARC_PRESET))),
        *[(f"fast K={k}", fast(k)) for k in rest],
    ]
    results = {}
    for name, measure in plan:
        if budget.admit(name):
            results[name] = measure()
            if name != "arc":
                print(
                    f"[{budget.elapsed():5.0f}s] {name}: {results[name]['seconds_per_edit']:.2f} s/edit",
                    flush=True,
                )
    release_memory()
    order = ["reference", *(f"fast K={k}" for k in sorted(w.k_values))]
    paths = {name: results[name] for name in order if name in results}
    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": str(check.dtype).removeprefix("torch."),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "smoke": args.smoke,
        "max_seconds": args.max_seconds,
        "workload": asdict(w),
        "architectures": check.architectures,
        "knowledge": paths,
        "round_estimate": round_estimate(knowledge_cfg.restem, paths),
        "arc": results.get("arc"),
        "skipped": budget.skipped,
        "elapsed_seconds": budget.elapsed(),
    }
    print_summary(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
