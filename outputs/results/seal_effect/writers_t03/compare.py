"""writers_t03 (both writers sampled at temperature 0.3, the base model the learner) against the same
writers at temperature 1 (fixed2's round-0 and round-2 held-out rows) and writers1's oracle, paired by
passage; from the repo root:
python outputs/results/seal_effect/writers_t03/compare.py > outputs/results/seal_effect/writers_t03/compare.txt"""

import json
from pathlib import Path

from seal_runner.stats import paired_difference

R = Path("outputs/results/seal_effect")


def per_article(row: dict, logprob: bool) -> dict[int, float]:
    values = row["answer_logprob"]["per_article"] if logprob else row["per_article"]
    return {int(k): v for k, v in values.items()}


def heldout(row: dict, condition: str, logprob: bool) -> dict[int, float]:
    values = row["answer_logprob"][condition]["per_article"] if logprob else row["per_article"][condition]
    return {int(k): v for k, v in values.items()}


t03 = json.loads((R / "writers_t03/summary.json").read_text())["conditions"]
fixed2 = [r["heldout"] for r in json.loads((R / "fixed2/summary.json").read_text())["rounds"]]
oracle = json.loads((R / "writers1/summary.json").read_text())["conditions"]["file"]
for logprob, unit in ((False, "pts"), (True, "nats/token")):
    scale = 1 if logprob else 100
    pairs = [
        (
            "policy T=0.3 - policy T=1 (fixed2 round 2)",
            per_article(t03["policy_on_base"], logprob),
            heldout(fixed2[2], "selfedit", logprob),
        ),
        (
            "base writer T=0.3 - base writer T=1 (fixed2 round 0)",
            per_article(t03["selfedit"], logprob),
            heldout(fixed2[0], "selfedit", logprob),
        ),
        (
            "policy T=0.3 - passage",
            per_article(t03["policy_on_base"], logprob),
            per_article(t03["passage"], logprob),
        ),
        (
            "policy T=0.3 - oracle (sentences restated)",
            per_article(t03["policy_on_base"], logprob),
            per_article(oracle, logprob),
        ),
    ]
    for name, a, b in pairs:
        d = paired_difference(a, b)
        print(
            f"{name} ({unit}): {scale * d.mean:+.3f} [{scale * d.low:+.3f}, {scale * d.high:+.3f}], n={d.n}"
            + (" (within noise)" if d.within_noise else "")
        )
