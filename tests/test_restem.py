"""One full ReSTEM round on a tiny random model: sample → reward → select → SFT → merge → evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import compose_config, seal_run
from safetensors.torch import load_file

from seal_runner.errors import InputError
from seal_runner.stages.common import build_domain


def run_restem(model_dir: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return seal_run(
        *extra,
        "stage=restem",
        f"model.name_or_path={model_dir}",
        "engine=hf",
        "logger=none",
        "domain.n_articles=2",
        "restem.rounds=1",
        "restem.contexts_per_round=2",
        "restem.samples_per_context=2",
        "restem.inner_seeds=1",
        "sampling.max_tokens=12",
        "domain.drop_cut_line=false",  # a random tiny model's self-edits are all cut at max_tokens
        "domain.qa_max_tokens=4",
        "lora.epochs=1",
        "lora.rank=4",
        "lora.alpha=8",
        "engine.max_lora_rank=4",
        "sft.rank=4",
        "sft.alpha=8",
        "sft.epochs=1",
        "sft.lr=1e-2",
        f"hydra.run.dir={run_dir}",
        f"hydra.sweep.dir={run_dir}",
    )


@pytest.mark.integration
def test_one_round_end_to_end_and_resume(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    extra = ("restem.heldout_samples=2", "restem.heldout_passage=true")
    proc = run_restem(tiny_model_dir, run_dir, *extra)
    assert "held-out accuracy (%) per policy" in proc.stdout and "round_1_vs_round_0" in proc.stdout
    # a header per step on the console, in the loop's order, naming which round's policy is evaluated
    headers = [
        "round 0: held-out evaluation of the starting policy (2 contexts)",
        "round 0: sampling and scoring self-edits on 2 training contexts (reward: inner)",
        "round 0: 2 of 4 candidates kept (best_of_k)",
        "round 0: policy SFT on the 2 kept pairs",
        "round 1: held-out evaluation of the policy after round 1 (2 contexts)",
        "held-out accuracy (%) per policy",
    ]
    console = proc.stderr + proc.stdout
    assert all(h in console for h in headers), console[-3000:]
    assert [console.index(h) for h in headers] == sorted(console.index(h) for h in headers)

    round_dir = run_dir / "round_0"
    rewards = json.loads((round_dir / "rewards.json").read_text())
    assert len(rewards) == 2 * 2  # contexts x samples
    chosen = json.loads((round_dir / "sft.json").read_text())
    assert sorted(c["context"] for c in chosen) == sorted(
        {r["context"] for r in rewards}
    )  # best_of_k: one each
    eval_titles = {
        json.loads(line)["title"]
        for line in (run_dir / "eval/round_0/results.jsonl").read_text().splitlines()
    }
    assert eval_titles.isdisjoint({r["title"] for r in rewards})

    start = load_file(str(tiny_model_dir / "model.safetensors"))
    merged = load_file(str(round_dir / "policy" / "model.safetensors"))
    changed = [k for k in start if "q_proj" in k and not torch.equal(start[k], merged[k])]
    assert changed, "the merged policy must differ from the starting model"
    assert (run_dir / "eval/round_1/summary.json").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    assert summary["rounds"][0]["chosen"] == 2
    # Two self-edits and a passage-only update per held-out article; every accuracy has a CI and
    # every comparison is paired over the same articles.
    heldout = summary["rounds"][1]["heldout"]
    assert heldout["selfedit"]["samples"] == 2 and len(heldout["per_article"]["passage"]) == 2
    assert (
        heldout["selfedit"]["ci_low"]
        <= heldout["selfedit"]["macro_accuracy"]
        <= heldout["selfedit"]["ci_high"]
    )
    assert len((run_dir / "eval/round_1/updates.jsonl").read_text().splitlines()) == 2 * 3
    assert {"round_1_vs_round_0", "noise_floor", "final_selfedit_vs_own_passage"} <= set(
        summary["comparisons"]
    )
    assert summary["comparisons"]["round_1_vs_round_0"]["n"] == 2
    assert [r["row"] for r in summary["table2"]][-1] == "passage + self-edit (policy after round 1)"
    assert all((run_dir / name).read_bytes()[:4] == b"\x89PNG" for name in ("round_curve.png", "table2.png"))

    files = sorted(
        p
        for p in run_dir.rglob("*.json*")
        if not {".hydra", "logs"} & set(p.parts) and p.name != "summary.json"
    )
    before = {p: p.read_bytes() for p in files}
    run_restem(tiny_model_dir, run_dir, *extra)  # rerun: nothing new sampled, trained or graded
    assert {p: p.read_bytes() for p in files} == before


@pytest.mark.integration
def test_likelihood_reward_and_heldout_answer_logprob(tiny_model_dir, tmp_path):
    """reward=likelihood: every candidate's reward is its update's gain in gold-answer log-probability
    over no update (finite, so best-of-k keeps one per context); the held-out evaluation scores every
    condition by likelihood too and the table prints the paired differences."""
    run_dir = tmp_path / "run"
    extra = (
        "engine@qa_engine=hf",
        "restem.reward=likelihood",
        "restem.heldout_likelihood=true",
        "restem.heldout_passage=true",
    )
    proc = run_restem(tiny_model_dir, run_dir, *extra)
    rewards = json.loads((run_dir / "round_0" / "rewards.json").read_text())
    assert len(rewards) == 4 and all(c["baseline"] == 0.0 and c["reward"] == c["reward"] for c in rewards)
    assert len({round(c["reward"], 6) for c in rewards}) > 1  # dense: the updates differ
    scored = [json.loads(line) for line in (run_dir / "round_0" / "rewards_logprob.jsonl").open()]
    assert {r["condition"] for r in scored} == {"baseline"} | {
        c["key"] for c in map(json.loads, (run_dir / "round_0" / "updates.jsonl").open())
    }
    assert len(json.loads((run_dir / "round_0" / "sft.json").read_text())) == 2  # best-of-k per context
    summary = json.loads((run_dir / "summary.json").read_text())
    for record in summary["rounds"]:
        assert set(record["heldout"]["answer_logprob"]) == {"base", "selfedit", "passage"}
    assert "round_1_vs_round_0" in summary["likelihood_comparisons"]
    assert "paired log-likelihood differences" in proc.stdout


@pytest.mark.integration
def test_fixed_learner_and_passage_baseline(tiny_model_dir, tmp_path):
    """restem.learner=base: every round's inner updates start from the starting model (its no-update
    row is the same each round) while the policy still changes; restem.reward_baseline=passage: one
    more update per context on the passage alone, whose gain is the baseline positive_gain compares
    with, so a kept self-edit beat its passage."""
    run_dir = tmp_path / "run"
    extra = (
        "engine@qa_engine=hf",
        "restem.reward=likelihood",
        "restem.heldout_likelihood=true",
        "restem.learner=base",
        "restem.reward_baseline=passage",
        "restem.selection=positive_gain",
    )
    proc = run_restem(tiny_model_dir, run_dir, *extra)
    updates = [json.loads(line)["key"] for line in (run_dir / "round_0" / "updates.jsonl").open()]
    assert sorted(k for k in updates if k.endswith("-passage")) == sorted(
        {k[:5] + "-passage" for k in updates}
    )
    per_question: dict[tuple[str, int], list[float]] = {}
    for r in map(json.loads, (run_dir / "round_0" / "rewards_logprob.jsonl").open()):
        kind = "passage" if r["condition"].endswith("-passage") else r["condition"]
        per_question.setdefault((kind, r["article"]), []).append(r["logprob"])
    mean = {key: sum(v) / len(v) for key, v in per_question.items()}
    rewards = json.loads((run_dir / "round_0" / "rewards.json").read_text())
    for c in rewards:
        assert c["baseline_kind"] == "passage"
        assert c["baseline"] == pytest.approx(
            mean[("passage", c["context"])] - mean[("baseline", c["context"])]
        )
    best = {}
    for c in rewards:  # per context the highest reward, ties to the earliest sample
        if c["context"] not in best or c["reward"] > best[c["context"]]["reward"]:
            best[c["context"]] = c
    expected = sorted((c["context"], c["sample"]) for c in best.values() if c["reward"] > c["baseline"])
    chosen = json.loads((run_dir / "round_0" / "sft.json").read_text())
    assert sorted((c["context"], c["sample"]) for c in chosen) == expected
    summary = json.loads((run_dir / "summary.json").read_text())
    start, end = summary["rounds"]
    assert start["learner"] == end["learner"] == str(tiny_model_dir)
    assert start["heldout"]["answer_logprob"]["base"] == end["heldout"]["answer_logprob"]["base"]
    assert (end["policy"] != start["policy"]) == bool(chosen)  # the policy moves, the learner does not
    moved = "every update trains the starting model (restem.learner=base)" in proc.stdout
    assert moved == bool(chosen)


def test_table_names_a_fixed_learner():
    """The last Table 2 row says whose update it is once the learner is not the policy."""
    from seal_runner.domains.knowledge.report import table2_rows

    cell = {"macro_accuracy": 0.1, "ci_low": 0.0, "ci_high": 0.2}
    heldout = {"base": cell, "selfedit": cell}
    rounds = [
        {"round": 0, "policy": "base", "learner": "base", "heldout": heldout},
        {"round": 1, "policy": "round_0/policy", "learner": "base", "heldout": heldout},
    ]
    assert table2_rows(rounds)[-1]["row"] == "passage + self-edit (policy after round 1, base model updated)"
    rounds[1]["learner"] = "round_0/policy"
    assert table2_rows(rounds)[-1]["row"] == "passage + self-edit (policy after round 1)"


def test_reward_baselines_that_do_not_apply_are_refused(hydra_ctx, tiny_model_dir):
    """A passage baseline needs an inner update to compare with: the proxy reward and ARC's solved
    reward name the key instead of running."""
    for overrides in (
        ["restem.reward=proxy"],
        ["experiment=demo/arc_cpu"],
    ):
        cfg = compose_config(
            [
                "stage=restem",
                f"model.name_or_path={tiny_model_dir}",
                "restem.reward_baseline=passage",
                *overrides,
            ]
        )
        with pytest.raises(InputError, match="reward_baseline=passage"):
            build_domain(cfg, SimpleNamespace(cfg=cfg))


def test_likelihood_reward_without_the_hf_qa_engine_names_the_fix(hydra_ctx, tiny_model_dir):
    """Teacher forcing needs the transformers QA engine: the domain, built right after the run's
    checks, refuses a vLLM one naming the override (tests/test_bad_input.py: such an InputError
    reaches the console as one line)."""
    cfg = compose_config(
        [
            "stage=restem",
            f"model.name_or_path={tiny_model_dir}",
            "experiment=paper/knowledge_restem",  # answers with vLLM
            "restem.reward=likelihood",
        ]
    )
    with pytest.raises(InputError) as info:
        build_domain(cfg, SimpleNamespace(cfg=cfg))
    assert "engine@qa_engine=hf" in str(info.value)


@pytest.mark.integration
def test_proxy_vs_true_sweep_scores_the_same_self_edits_and_writes_the_table(tiny_model_dir, tmp_path):
    """The preset's two jobs sample identical round-0 self-edits; the proxy job trains no inner
    adapter for its rewards, and the callback joins both into comparison.md."""
    sweep = tmp_path / "sweep"
    proc = run_restem(
        tiny_model_dir, sweep, "-m", "experiment=reward/proxy_vs_true", "engine=hf", "engine@qa_engine=hf"
    )
    summaries = {d: json.loads((d / "summary.json").read_text()) for d in (sweep / "0", sweep / "1")}
    jobs = {s["reward"]: d for d, s in summaries.items()}
    assert set(jobs) == {"inner", "proxy"}
    assert all(s["rounds"][0]["reward_seconds"] > 0 for s in summaries.values())
    inner, proxy = (json.loads((jobs[k] / "round_0/rewards.json").read_text()) for k in ("inner", "proxy"))
    assert [c["completion"] for c in inner] == [c["completion"] for c in proxy]
    assert not (jobs["proxy"] / "round_0/updates.jsonl").exists()  # no inner update behind a proxy reward
    assert all(c["baseline"] == 0.0 and c["reward"] == c["reward"] for c in proxy)  # finite gains
    assert len(json.loads((jobs["proxy"] / "round_0/sft.json").read_text())) == 2  # best-of-k per context
    table = (sweep / "comparison.md").read_text()
    assert "| inner |" in table and "| proxy |" in table
    assert "rank agreement on 4 shared round-0 candidates (0 differ)" in table
    assert "comparison.md" in proc.stdout
    script = Path(__file__).parents[1] / "scripts" / "sweep_table.py"
    by_hand = subprocess.run(
        [sys.executable, str(script), "reward", str(sweep)], capture_output=True, text=True, check=True
    )
    assert by_hand.stdout == table  # the script renders what the callback wrote
    run_restem(
        tiny_model_dir, sweep, "-m", "experiment=reward/proxy_vs_true", "engine=hf", "engine@qa_engine=hf"
    )
    assert scoring_columns((sweep / "comparison.md").read_text()) == scoring_columns(table)  # first cost kept


def scoring_columns(table: str) -> list[list[str]]:
    """Each row's reward, scoring seconds, per candidate, speed-up and accuracies (not its wall time)."""
    return [line.split("|")[1:6] for line in table.splitlines() if line.startswith(("| inner", "| proxy"))]
