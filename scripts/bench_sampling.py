"""Self-edit sampling throughput: vLLM vs transformers `generate` on the same prompts, one process.

Both engines get the same formatted self-edit prompts (the paper's implications prompt over demo
passages) and the same sampling settings; prints generated tokens/s for each and the ratio, and writes
a JSON.  python scripts/bench_sampling.py --prompts 16 --max-tokens 256
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from seal_runner.domains.knowledge.data import load_articles
from seal_runner.engines.base import Sampling
from seal_runner.models import BUILTIN_SMOLLM2, load_tokenizer, resolve_model_path
from seal_runner.prompts import PromptFormatter, selfedit_prompt

TEMPLATE = "Let's read the following passage and {instruction}.\n\nPassage:\n{title}\n{context}\n\n{header}"
INSTRUCTION = "produce a list of implications derived directly or indirectly from the content"


def timed(engine, prompts: list[str], sampling: Sampling) -> dict:
    start = time.perf_counter()
    completions = engine.generate(prompts, sampling, seeds=list(range(len(prompts))))
    seconds = time.perf_counter() - start
    tokens = sum(c.num_tokens for c in completions)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=BUILTIN_SMOLLM2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--hf-batch-size", type=int, default=16)
    parser.add_argument("--out", default="outputs/bench_sampling.json")
    args = parser.parse_args()

    from seal_runner.engines.hf_engine import HFEngine
    from seal_runner.engines.vllm_engine import VLLMEngine

    path = resolve_model_path(args.model)
    formatter = PromptFormatter(load_tokenizer(path), chat=True)
    articles = load_articles("builtin:demo", 0, args.prompts)
    prompts = [
        formatter(selfedit_prompt(TEMPLATE, INSTRUCTION, "Implications:\n", a.title, a.context))
        for a in articles
    ]
    sampling = Sampling(temperature=1.0, top_p=0.95, max_tokens=args.max_tokens)
    report = {"args": vars(args)}
    start = time.perf_counter()
    vllm = VLLMEngine(path, max_model_len=2048)
    report["vllm_startup_s"] = time.perf_counter() - start
    report["vllm"] = timed(vllm, prompts, sampling)
    vllm.close()
    hf = HFEngine(path, batch_size=args.hf_batch_size)
    report["hf"] = timed(hf, prompts, sampling)
    report["ratio_vllm_over_hf"] = report["vllm"]["tokens_per_s"] / report["hf"]["tokens_per_s"]
    for name in ("vllm", "hf"):
        r = report[name]
        print(f"{name:<5} {r['tokens']:6d} tokens in {r['seconds']:6.1f} s = {r['tokens_per_s']:7.1f} tok/s")
    print(
        f"vLLM / HF: {report['ratio_vllm_over_hf']:.1f}x   (vLLM start-up {report['vllm_startup_s']:.0f} s, not counted)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
