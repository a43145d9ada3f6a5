"""Write invented passages (seal_runner/domains/knowledge/generator.py) to a JSON file in the list format.

The runner reads them directly with `domain.data_path=generated:<seed>` (or `restem.train_data_path`);
this script is for inspecting them or freezing a set as a file:

    python scripts/generate_passages.py --n 200 --seed 0 --out data/generated_seed0.json

Article i of a seed is the same whatever --start and --n select, so files from different slices agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seal_runner.domains.knowledge.generator import generate_articles


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="number of articles (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="index of the first article")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.n < 1 or args.start < 0:
        print(
            f"error: need --n >= 1 and --start >= 0, got --n {args.n} --start {args.start}", file=sys.stderr
        )
        return 2
    articles = generate_articles(args.n, args.seed, args.start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(articles, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    questions = sum(len(a["questions"]) for a in articles)
    print(f"wrote {len(articles)} articles, {questions} questions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
