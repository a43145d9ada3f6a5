"""Judge throughput at concurrency 1 vs N against the in-process fake server with a fixed latency.

Shows what bounded concurrency buys over the reference's sequential grading: with a latency-bound
judge, throughput should scale close to N until the local machine (or the real API's rate limit)
becomes the bottleneck. No network beyond 127.0.0.1 and no API key are needed.

    python scripts/bench_judge.py --questions 64 --latency 0.05 --concurrency 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# The fake server is a test fixture; import it from tests/ rather than keeping a second copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_openai_server import FakeOpenAIServer  # noqa: E402

from seal_runner.graders.base import GradeItem  # noqa: E402
from seal_runner.graders.llm_judge import LLMJudgeGrader  # noqa: E402
from seal_runner.openai_api import ChatClient  # noqa: E402


def make_items(n: int) -> list[GradeItem]:
    """Distinct items (the grader sends each distinct prompt once), half of them correct."""
    return [
        GradeItem(f"Topic: Bench\nQuestion {i}?", f"answer{i}", f"answer{i}" if i % 2 else f"wrong{i}")
        for i in range(n)
    ]


def run(base_url: str, items: list[GradeItem], concurrency: int) -> tuple[float, float]:
    """(seconds, accuracy) for one cold pass; no cache, so every item costs one request."""
    client = ChatClient(
        "gpt-4.1", base_url=base_url, api_key_env="SEAL_BENCH_NO_KEY", max_concurrency=concurrency
    )
    start = time.perf_counter()
    verdicts = LLMJudgeGrader(client).grade(items)
    elapsed = time.perf_counter() - start
    return elapsed, sum(bool(v.correct) for v in verdicts) / len(verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05, help="fake judge latency per request, seconds")
    parser.add_argument("--concurrency", type=int, default=16, help="N, compared against 1")
    args = parser.parse_args()

    items = make_items(args.questions)
    rows = []
    with FakeOpenAIServer(latency=args.latency) as server:
        for concurrency in (1, args.concurrency):
            seconds, accuracy = run(server.base_url, items, concurrency)
            rows.append((concurrency, seconds, args.questions / seconds, accuracy))

    print(f"{args.questions} questions, fake judge latency {args.latency * 1000:.0f} ms/request")
    print(f"{'concurrency':>11} {'seconds':>8} {'questions/s':>12} {'accuracy':>9}")
    for concurrency, seconds, throughput, accuracy in rows:
        print(f"{concurrency:>11} {seconds:>8.2f} {throughput:>12.1f} {accuracy:>9.2f}")
    print(f"speed-up at concurrency {args.concurrency}: {rows[1][2] / rows[0][2]:.1f}x")


if __name__ == "__main__":
    main()
