"""Self-edit sampling throughput: vLLM vs transformers `generate` on the same prompts, one process.

Both engines get the same formatted self-edit prompts (the paper's implications prompt over demo
passages) and the same sampling settings; prints generated tokens/s for each and the ratio, and writes
a JSON.  python scripts/bench_sampling.py --prompts 16 --max-tokens 256

`--vllm-modes in_process,multiprocess --repeats 2 --no-hf` times vLLM engines that differ only in
`engine.in_process`, one after another in this process and alternated, and checks that they sample the
same texts.
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


VLLM_MODES = {"multiprocess": False, "in_process": True}  # engine.in_process


def timed(engine, prompts: list[str], sampling: Sampling) -> tuple[dict, list[str]]:
    start = time.perf_counter()
    completions = engine.generate(prompts, sampling, seeds=list(range(len(prompts))))
    seconds = time.perf_counter() - start
    tokens = sum(c.num_tokens for c in completions)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}, [
        c.text for c in completions
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=BUILTIN_SMOLLM2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--hf-batch-size", type=int, default=16)
    parser.add_argument(
        "--vllm-modes", default="multiprocess", help=f"comma-separated, of {list(VLLM_MODES)}"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-hf", action="store_true")
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
    report = {"args": vars(args), "vllm_runs": []}
    modes = args.vllm_modes.split(",")
    texts = {}
    for _ in range(args.repeats):
        for mode in modes:
            start = time.perf_counter()
            vllm = VLLMEngine(path, max_model_len=2048, in_process=VLLM_MODES[mode])
            startup = time.perf_counter() - start
            run, texts[mode] = timed(vllm, prompts, sampling)
            vllm.close()
            report["vllm_runs"].append({"mode": mode, "startup_s": startup, **run})
            print(
                f"vllm[{mode}] {run['tokens']:6d} tokens in {run['seconds']:6.1f} s = {run['tokens_per_s']:7.1f} tok/s"
            )
    first = modes[0]
    for mode in modes:
        runs = [r for r in report["vllm_runs"] if r["mode"] == mode]
        summary = {
            "tokens_per_s": sum(r["tokens"] for r in runs) / sum(r["seconds"] for r in runs),
            "startup_s": sum(r["startup_s"] for r in runs) / len(runs),
            "same_texts_as_" + first: texts[mode] == texts[first],
        }
        report[f"vllm[{mode}]"] = summary
        ratio = summary["tokens_per_s"] / report[f"vllm[{first}]"]["tokens_per_s"]
        print(
            f"vllm[{mode}]: {summary['tokens_per_s']:.1f} tok/s ({ratio:.2f}x {first}), start-up "
            f"{summary['startup_s']:.0f} s, same texts as {first}: {texts[mode] == texts[first]}"
        )
    if not args.no_hf:
        hf = HFEngine(path, batch_size=args.hf_batch_size)
        report["hf"], _ = timed(hf, prompts, sampling)
        report["ratio_vllm_over_hf"] = report[f"vllm[{first}]"]["tokens_per_s"] / report["hf"]["tokens_per_s"]
        r = report["hf"]
        print(f"hf    {r['tokens']:6d} tokens in {r['seconds']:6.1f} s = {r['tokens_per_s']:7.1f} tok/s")
        print(f"vLLM[{first}] / HF: {report['ratio_vllm_over_hf']:.2f}x   (vLLM start-up not counted)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
