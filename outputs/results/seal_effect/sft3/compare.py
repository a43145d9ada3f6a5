"""sft3 (fixed1's round-0 rewards, policy SFT at lr 3e-3, then a second round) against fixed1/fixed2 (SFT
at lr 1e-3) and writers1's oracle, paired by passage; from the repo root:
python outputs/results/seal_effect/sft3/compare.py > outputs/results/seal_effect/sft3/compare.txt
(`... compare.py <summary.json>` reads another run's summary, e.g. the round-1 one this run replaced)."""

import json
import sys
from pathlib import Path

from seal_runner.stats import paired_difference

R = Path("outputs/results/seal_effect")


def lp(h, c):
    return {int(k): v for k, v in h["answer_logprob"][c]["per_article"].items()}


def acc(h, c):
    return {int(k): v for k, v in h["per_article"][c].items()}


s = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else R / "sft3/summary.json").read_text())
held = [r["heldout"] for r in s["rounds"]]
f1 = json.loads((R / "fixed1/summary.json").read_text())
f2 = json.loads((R / "fixed2/summary.json").read_text())
f1h = [r["heldout"] for r in f1["rounds"]]
f2h = [r["heldout"] for r in f2["rounds"]]
oracle = json.loads((R / "writers1/summary.json").read_text())["conditions"]["file"]
orl = {int(k): v for k, v in oracle["answer_logprob"]["per_article"].items()}
ora = {int(k): v for k, v in oracle["per_article"].items()} if "per_article" in oracle else None
for r, h in enumerate(held):
    print(
        f"round {r}",
        {c: round(100 * h[c]["macro_accuracy"], 1) for c in ("base", "passage", "selfedit")},
        {c: round(v["mean_logprob"], 3) for c, v in h["answer_logprob"].items()},
        h.get("selfedits"),
        round(h["mean_selfedit_tokens"], 1),
    )
pairs = []
for r in range(1, len(held)):
    pairs += [
        (f"sft3 round {r} - round 0 (acc)", acc(held[r], "selfedit"), acc(held[0], "selfedit")),
        (f"sft3 round {r} - round 0 (lp)", lp(held[r], "selfedit"), lp(held[0], "selfedit")),
        (f"sft3 round {r} - passage (acc)", acc(held[r], "selfedit"), acc(held[r], "passage")),
        (f"sft3 round {r} - passage (lp)", lp(held[r], "selfedit"), lp(held[r], "passage")),
        (f"sft3 round {r} - fixed1/2 round {r} (acc)", acc(held[r], "selfedit"), acc(f2h[r], "selfedit")),
        (f"sft3 round {r} - fixed1/2 round {r} (lp)", lp(held[r], "selfedit"), lp(f2h[r], "selfedit")),
        (f"sft3 round {r} - oracle (lp)", lp(held[r], "selfedit"), orl),
    ]
    if ora:
        pairs.append((f"sft3 round {r} - oracle (acc)", acc(held[r], "selfedit"), ora))
if len(held) > 2:
    pairs.append(("sft3 round 2 - round 1 (acc)", acc(held[2], "selfedit"), acc(held[1], "selfedit")))
    pairs.append(("sft3 round 2 - round 1 (lp)", lp(held[2], "selfedit"), lp(held[1], "selfedit")))
for label, a, b in pairs:
    d = paired_difference(a, b)
    scale = 100 if "(acc)" in label else 1
    print(f"{label}: {scale * d.mean:+.3f} [{scale * d.low:+.3f}, {scale * d.high:+.3f}] n={d.n}")
for r in s["rounds"][:-1]:
    print(
        f"round {r['round']} rewards",
        r["rewards"],
        "chosen",
        r["chosen"],
        "sft",
        r.get("sft"),
        r.get("selfedits"),
    )
print("total_s", round(s["total_s"]))
