"""fixed1 against writers1, paired by passage; from the repo root:
python outputs/results/seal_effect/fixed1/compare.py > outputs/results/seal_effect/fixed1/compare.txt"""

import json
from pathlib import Path

from seal_runner.stats import paired_difference

RESULTS = Path("outputs/results/seal_effect")


def per_article(conditions: dict, name: str) -> dict[int, float]:
    return {int(k): v for k, v in conditions[name]["answer_logprob"]["per_article"].items()}


summary = json.loads((RESULTS / "fixed1" / "summary.json").read_text())
writers = json.loads((RESULTS / "writers1" / "summary.json").read_text())["conditions"]
for metric in ("comparisons", "likelihood_comparisons"):
    print(metric)
    for name, d in summary[metric].items():
        print(f"  {name}: {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] n={d['n']}")
start, end = (r["heldout"] for r in summary["rounds"])
for name, h in (("round 0", start), ("round 1", end)):
    accuracy = {c: round(100 * h[c]["macro_accuracy"], 1) for c in ("base", "passage", "selfedit")}
    logprob = {c: round(v["mean_logprob"], 3) for c, v in h["answer_logprob"].items()}
    print(name, accuracy, logprob, h["selfedits"], round(h["mean_selfedit_tokens"], 1))
lp = {
    name: {int(k): v for k, v in h["answer_logprob"]["selfedit"]["per_article"].items()}
    for name, h in (("start", start), ("end", end))
}
for label, a, b in (
    (
        "fixed1 round-1 policy - run5's final policy (writers1), both on the base model",
        lp["end"],
        per_article(writers, "policy_on_base"),
    ),
    ("fixed1 round-0 base writer - writers1 base writer", lp["start"], per_article(writers, "selfedit")),
    ("fixed1 round-1 policy - oracle restated sentences (writers1)", lp["end"], per_article(writers, "file")),
):
    d = paired_difference(a, b)
    print(f"{label}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] n={d.n}")
r0 = summary["rounds"][0]
print("rewards", r0["rewards"], "chosen", r0["chosen"], "sft", r0.get("sft"), r0.get("selfedits"))
