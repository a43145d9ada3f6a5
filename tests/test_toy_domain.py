"""A third domain, defined entirely in this file, runs `stage=restem` with no change under seal_runner/.

Plugging it in takes one YAML file naming the class (`_target_`) in a config dir Hydra searches, and
the module on PYTHONPATH. The toy's reward is 1 when the self-edit contains MARKER, so the test also
shows that the outer loop learns what it is rewarded for: after 2 rounds of sample -> score ->
select (`all_positive`) -> SFT, the policy writes the marker in clearly more held-out samples than
the starting model. MARKER is one letter found in 4% of the tokenizer's tokens, so a random model
writes it in about a fifth of its 6-token samples; the SFT trains `lm_head` in full beside its LoRA
(`sft.modules_to_save`), which a random model's tiny logits need before any token can become likely.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import RUN_ENV, seal_run

from seal_runner.engines.base import Sampling
from seal_runner.records import append_jsonl, derive_seed, read_jsonl

MARKER = "k"


class ToyDomain:
    """Contexts are item numbers; a self-edit is a short note about one; reward = MARKER in the note."""

    objective_name = "marker_rate"

    def __init__(
        self, run, restem, name: str, marker: str, heldout_items: int, samples: int, max_tokens: int
    ):
        self.run, self.restem, self.marker = run, restem, marker
        self.heldout_items, self.samples, self.max_tokens = heldout_items, samples, max_tokens

    def heldout(self) -> list[int]:
        return list(range(1000, 1000 + self.heldout_items))

    def training_contexts(self, round: int) -> list[int]:
        n = self.restem.contexts_per_round
        return list(range(round * n, (round + 1) * n))

    def sample(self, engine, contexts: list[int], out: Path) -> dict[tuple, dict]:
        path = out / "self_edits.jsonl"
        done = {(r["context"], r["sample"]): r for r in read_jsonl(path)}
        todo = [(c, s) for c in contexts for s in range(self.samples) if (c, s) not in done]
        if todo:
            prompts = [self.run.formatter(f"Write a short note about item {c}.") for c, _ in todo]
            seeds = [derive_seed(self.run.cfg.seed, "toy", out.name, c, s) for c, s in todo]
            completions = engine.generate(prompts, Sampling(1.0, 1.0, self.max_tokens), seeds=seeds)
            new = [
                {"context": c, "sample": s, "prompt": p, "text": x.text.strip(), "num_tokens": x.num_tokens}
                for (c, s), p, x in zip(todo, prompts, completions, strict=True)
            ]
            append_jsonl(path, new)
            done.update({(r["context"], r["sample"]): r for r in new})
        return done

    def score(self, engines, policy: str, contexts, edits: dict, out: Path) -> list[dict]:
        return [
            {
                "context": e["context"],
                "sample": e["sample"],
                "prompt": e["prompt"],
                "completion": e["text"],
                "reward": float(self.marker in e["text"]),
                "baseline": 0.0,
            }
            for e in edits.values()
        ]

    def round_fields(self, edits: dict, candidates: list[dict]) -> dict:
        return {"empty_selfedits": len(edits) - len(candidates)}

    def evaluate(self, engines, policy: str, heldout: list[int], out: Path) -> dict:
        edits = self.sample(engines.sampler, heldout, out)
        return {"marker_rate": sum(self.marker in e["text"] for e in edits.values()) / len(edits)}

    def round_metrics(self, record: dict) -> dict[str, float]:
        return {"heldout/marker_rate": record["heldout"]["marker_rate"]}

    def report(self, heldout: list[int], rounds: list[dict]) -> dict:
        return {"objective": rounds[-1]["heldout"]["marker_rate"]}

    def plots(self, summary: dict, run_dir: Path) -> dict[str, str]:
        return {}

    def format_table(self, summary: dict) -> str:
        return "\n".join(
            f"round {r['round']}: marker rate {r['heldout']['marker_rate']:.2f}" for r in summary["rounds"]
        )


TOY_YAML = f"""\
_target_: test_toy_domain.ToyDomain
name: toy
marker: {MARKER}
heldout_items: 16
samples: 8
max_tokens: 6
"""


@pytest.fixture(scope="module")
def untied_tiny_model_dir(tmp_path_factory) -> Path:
    """conftest's tiny random Llama with its own output layer, so the SFT LoRA can reach the logits."""
    from conftest import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-untied"), tie_word_embeddings=False)


@pytest.mark.integration
@pytest.mark.slow
def test_toy_domain_learns_its_marker_through_stage_restem(untied_tiny_model_dir, tmp_path):
    conf = tmp_path / "conf"
    (conf / "domain").mkdir(parents=True)
    (conf / "domain" / "toy.yaml").write_text(TOY_YAML)
    run_dir = tmp_path / "run"
    pythonpath = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    proc = seal_run(
        "~experiment",  # the default preset sets knowledge keys
        f"hydra.searchpath=[file://{conf}]",
        "domain=toy",
        "stage=restem",
        f"model.name_or_path={untied_tiny_model_dir}",
        "engine=hf",
        "engine@qa_engine=hf",
        "logger=none",
        "restem.rounds=2",
        "restem.contexts_per_round=8",
        "restem.selection=all_positive",
        "sft.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
        "sft.modules_to_save=[lm_head]",
        "sft.rank=16",
        "sft.alpha=32",
        "sft.lr=2e-2",
        "sft.epochs=20",
        "sft.batch_size=4",
        "sft.grad_accum=1",
        "sft.max_length=256",
        f"hydra.run.dir={run_dir}",
        env=RUN_ENV | {"PYTHONPATH": pythonpath},  # this module defines the domain
        timeout=900,
    )

    summary = json.loads((run_dir / "summary.json").read_text())
    rates = [r["heldout"]["marker_rate"] for r in summary["rounds"]]
    assert len(rates) == 3 and summary["objective"] == rates[-1]
    assert all(r["chosen"] > 0 and "sft" in r for r in summary["rounds"][:2]), summary["rounds"]
    chosen = json.loads((run_dir / "round_0" / "sft.json").read_text())
    assert all(MARKER in c["completion"] for c in chosen)  # all_positive keeps only rewarded self-edits
    # 128 held-out samples per round (SE about 0.04); a random policy writes the marker in about 0.2
    assert rates[-1] >= rates[0] + 0.2 and rates[-1] >= 1.5 * rates[0], rates
    assert "round 2: marker rate" in proc.stdout
