"""Probe-question answering under many LoRA adapters: the multi-adapter layer's two ways of adding
the adapters' deltas, side by side in one process, alternated.

`by_adapter` (what inference runs): one pair of matmuls per adapter present, on its own rows.
`per_row` (what training runs): the adapter matrices gathered once per row, then batched matmuls.
The HF engine answers the same QA prompts as a held-out pass of the default job (no-update rows and
rows under one adapter per passage, one batch, greedy, `--max-tokens` each) with both; the script
checks that they answer the same tokens and prints seconds and the ratio, and writes a JSON.
The adapters are random (PEFT format, B drawn at the scale of a trained update): speed does not
depend on what they learned.  python scripts/bench_qa.py --articles 8 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from seal_runner.domains.knowledge.data import load_articles
from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.lora.multi_lora import AdapterSpec, MultiLoraLinear, MultiLoraModel
from seal_runner.models import BUILTIN_SMOLLM2, load_causal_lm, load_tokenizer, resolve_model_path
from seal_runner.prompts import PromptFormatter, qa_prompt

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # lora=cpu_demo


@contextmanager
def adding(path: str):
    """Route the layer's inference through `path` (the training path for `per_row`)."""
    inference = MultiLoraLinear._add_by_adapter
    if path == "per_row":
        MultiLoraLinear._add_by_adapter = MultiLoraLinear._add_per_row
    try:
        yield
    finally:
        MultiLoraLinear._add_by_adapter = inference


def write_adapters(model_path: str, n: int, rank: int, out: Path) -> list[LoraAdapter]:
    model = load_causal_lm(model_path, dtype="float32", device="cpu")
    lora = MultiLoraModel(model, TARGETS, n, rank)
    generator = torch.Generator().manual_seed(0)
    adapters = []
    for slot in range(n):
        lora.reset(slot, AdapterSpec(rank, 2.0 * rank), seed=slot)
        with torch.no_grad():
            for layer in lora.layers.values():
                layer.lora_B[slot] = torch.randn(layer.lora_B.shape[1:], generator=generator) * 0.01
        adapters.append(LoraAdapter(f"a{slot}", str(lora.save_peft(slot, out / f"a{slot}", model_path))))
    return adapters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=BUILTIN_SMOLLM2)
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="outputs/bench_qa.json")
    args = parser.parse_args()

    from seal_runner.engines.hf_engine import HFEngine

    path = resolve_model_path(args.model)
    formatter = PromptFormatter(load_tokenizer(path), chat=True)
    articles = load_articles("builtin:demo", 0, args.articles)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = write_adapters(path, args.articles, args.rank, Path(tmp))
        units = [(a, None) for a in articles] + list(zip(articles, adapters, strict=True))
        prompts = [formatter(qa_prompt(qa.question, a.title, True)) for a, _ in units for qa in a.questions]
        routed = [adapter for a, adapter in units for _ in a.questions]
        engine = HFEngine(path, max_loras=len(adapters), max_lora_rank=args.rank, batch_size=len(prompts))
        sampling = Sampling(temperature=0.0, max_tokens=args.max_tokens)
        runs: dict[str, list[float]] = {"by_adapter": [], "per_row": []}
        answers: dict[str, list] = {}
        for _ in range(args.repeats):
            for name in runs:
                with adding(name):
                    start = time.perf_counter()
                    answers[name] = engine.generate(prompts, sampling, routed)
                    runs[name].append(time.perf_counter() - start)
    seconds = {name: sum(v) / len(v) for name, v in runs.items()}
    result = {
        "prompts": len(prompts),
        "adapters": len(adapters),
        "max_tokens": args.max_tokens,
        "runs_s": runs,
        "mean_s": seconds,
        "speedup": seconds["per_row"] / seconds["by_adapter"],
        "same_answers": [c.text for c in answers["by_adapter"]] == [c.text for c in answers["per_row"]],
        "tokens": sum(c.num_tokens for c in answers["by_adapter"]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
