"""Re-grade a finished knowledge run with the LLM judge: lexical-vs-judge agreement and judge throughput.

    python scripts/judge_agreement.py outputs/demo_knowledge_cpu/<date>/<time> \\
        --base-url http://127.0.0.1:8000/v1 --model <served model> --concurrency 1 16

Every `results.jsonl` under the run dir (evaluate: one; restem: one per held-out evaluation) is
graded once per concurrency level with a cold client (no cache), so each pass measures real judge
requests. Agreement compares the judge's raw yes/no (the paper's rule, before the injection guard)
with the lexical grader on the answers the judge actually saw; empty answers are wrong without a
request and are not counted. The judge's key, if it needs one, is read from --api-key-env.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from seal_runner.choices import OnFailure
from seal_runner.graders.base import GradeItem, Verdict
from seal_runner.graders.lexical import LexicalGrader, LexicalRule
from seal_runner.graders.llm_judge import LLMJudgeGrader, is_yes
from seal_runner.openai_api import ChatClient
from seal_runner.records import read_jsonl

RESULT_KEYS = ("question", "gold", "prediction")


def load_items(run_dir: Path) -> list[GradeItem]:
    files = sorted(run_dir.rglob("results.jsonl"))
    if not files:
        raise SystemExit(f"no results.jsonl under {run_dir}: is it a finished knowledge run dir?")
    items = []
    for path in files:
        for n, record in enumerate(read_jsonl(path), 1):
            missing = [k for k in RESULT_KEYS if not isinstance(record.get(k), str)]
            if missing:
                raise SystemExit(f"{path} record {n}: missing or non-string {missing}")
            items.append(GradeItem(record["question"], record["gold"], record["prediction"]))
    return items


def agreement(verdicts: list[Verdict]) -> dict:
    """Confusion of (lexical, judge) over judged answers: keys like "lexical_yes/judge_no"."""
    judged = [v for v in verdicts if v.detail.get("judge_reply") is not None]
    confusion = Counter(
        f"lexical_{'yes' if v.detail['lexical'] else 'no'}/judge_{'yes' if is_yes(v.detail['judge_reply']) else 'no'}"
        for v in judged
    )
    agree = confusion["lexical_yes/judge_yes"] + confusion["lexical_no/judge_no"]
    return {
        "judged": len(judged),
        "agreement_rate": agree / len(judged) if judged else None,
        "confusion": dict(sorted(confusion.items())),
        "judge_accuracy": sum(bool(v.correct) for v in verdicts) / len(verdicts),
        "lexical_accuracy": sum(bool(v.detail["lexical"]) for v in verdicts) / len(verdicts),
    }


def grade_pass(
    items: list[GradeItem], args: argparse.Namespace, concurrency: int
) -> tuple[list[Verdict], dict]:
    client = ChatClient(
        args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        max_concurrency=concurrency,
        timeout=args.timeout,
    )
    grader = LLMJudgeGrader(client, cross_check=LexicalGrader(args.rule), on_failure=OnFailure.skip)
    start = time.perf_counter()
    verdicts = grader.grade(items)
    seconds = time.perf_counter() - start
    sent = client.stats.requests - client.stats.retries
    return verdicts, {
        "concurrency": concurrency,
        "seconds": seconds,
        "judge_requests": sent,
        "questions_per_s": sent / seconds if seconds else None,
        **{
            k: v
            for k, v in grader.usage().items()
            if k in ("ungraded", "retries", "prompt_tokens", "completion_tokens", "cost_usd")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible /v1 URL; default: OpenAI")
    parser.add_argument("--model", default="gpt-4.1", help="judge model name as the server knows it")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16], help="one cold pass per value")
    parser.add_argument("--rule", default="contains", choices=LexicalRule.values(), help="lexical rule")
    parser.add_argument("--limit", type=int, default=None, help="grade only the first N answers")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args()

    items = load_items(args.run_dir)[: args.limit]
    passes, agreements = [], []
    for concurrency in args.concurrency:
        verdicts, timing = grade_pass(items, args, concurrency)
        passes.append(timing)
        agreements.append(agreement(verdicts))
    examples = [
        {
            "gold": item.gold,
            "prediction": item.prediction,
            "lexical": v.detail["lexical"],
            "judge": v.detail["judge_reply"],
        }
        for item, v in zip(items, verdicts, strict=True)
        if v.detail.get("judge_reply") is not None and is_yes(v.detail["judge_reply"]) != v.detail["lexical"]
    ][:8]
    report = {
        "run_dir": str(args.run_dir),
        "judge": args.model,
        "answers": len(items),
        "lexical_rule": args.rule,
        "agreement": agreements[-1],
        "verdicts_identical_across_passes": all(a == agreements[0] for a in agreements),
        "throughput": passes,
        "disagreement_examples": examples,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))

    a = report["agreement"]
    print(f"{len(items)} answers from {args.run_dir}; judge {args.model}; lexical rule {args.rule}")
    print(
        f"agreement {a['agreement_rate']:.3f} over {a['judged']} judged answers; confusion {a['confusion']}"
    )
    print(f"accuracy: judge {a['judge_accuracy']:.3f}, lexical {a['lexical_accuracy']:.3f}")
    print(f"{'concurrency':>11} {'seconds':>8} {'requests':>9} {'questions/s':>12} {'ungraded':>9}")
    for p in passes:
        print(
            f"{p['concurrency']:>11} {p['seconds']:>8.2f} {p['judge_requests']:>9} "
            f"{p['questions_per_s']:>12.2f} {p['ungraded']:>9}"
        )


if __name__ == "__main__":
    main()
