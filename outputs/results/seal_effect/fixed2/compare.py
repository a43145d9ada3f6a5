"""fixed2 (fixed1 resumed for a second round) against fixed1's rounds and writers1's oracle, paired by
passage; from the repo root:
python outputs/results/seal_effect/fixed2/compare.py > outputs/results/seal_effect/fixed2/compare.txt"""

import json
from pathlib import Path

from seal_runner.stats import paired_difference

RESULTS = Path("outputs/results/seal_effect")


def logprob(heldout: dict, condition: str) -> dict[int, float]:
    return {int(k): v for k, v in heldout["answer_logprob"][condition]["per_article"].items()}


def accuracy(heldout: dict, condition: str) -> dict[int, float]:
    return {int(k): v for k, v in heldout["per_article"][condition].items()}


summary = json.loads((RESULTS / "fixed2" / "summary.json").read_text())
writers = json.loads((RESULTS / "writers1" / "summary.json").read_text())["conditions"]
for metric in ("comparisons", "likelihood_comparisons"):
    print(metric)
    for name, d in summary[metric].items():
        print(f"  {name}: {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] n={d['n']}")
held = [r["heldout"] for r in summary["rounds"]]
for r, h in enumerate(held):
    acc = {c: round(100 * h[c]["macro_accuracy"], 1) for c in ("base", "passage", "selfedit")}
    lp = {c: round(v["mean_logprob"], 3) for c, v in h["answer_logprob"].items()}
    print(f"round {r}", acc, lp, h["selfedits"], round(h["mean_selfedit_tokens"], 1))
oracle = {int(k): v for k, v in writers["file"]["answer_logprob"]["per_article"].items()}
pairs = [
    ("round 2 - round 1 policy (log-prob)", logprob(held[2], "selfedit"), logprob(held[1], "selfedit")),
    ("round 2 - round 1 policy (accuracy)", accuracy(held[2], "selfedit"), accuracy(held[1], "selfedit")),
    ("round 2 policy - oracle restated sentences (writers1, log-prob)", logprob(held[2], "selfedit"), oracle),
    ("round 2 passage row - round 0 passage row (same learner, log-prob)", logprob(held[2], "passage"), logprob(held[0], "passage")),
]
for label, a, b in pairs:
    d = paired_difference(a, b)
    print(f"{label}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] n={d.n}")
for r in summary["rounds"][:-1]:
    print(f"round {r['round']} rewards", r["rewards"], "chosen", r["chosen"], "sft", r.get("sft"), r.get("selfedits"))
print("total_s", round(summary["total_s"]))
