"""Table 2 on a tiny random model: every self-edit source in one run, on the same articles.

The OpenAI row talks to a real local HTTP server (tests/fake_openai_server.py) through the same
engine a GPT-4.1 run uses; the trained-policy row points at a second checkpoint, so its own
no-update accuracy must be measured and used as its baseline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import RUN_ENV, seal_run
from fake_openai_server import FakeOpenAIServer

GPT_SELF_EDIT = "1. The passage states a fact.\n2. The fact is stated in the passage."


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_table2(model_dir: Path) -> list[str]:
    """The Table 2 preset on the tiny model, HF engines, one short LoRA epoch."""
    return [
        "experiment=demo/table2_cpu",
        f"model.name_or_path={model_dir}",
        "engine=hf",
        "engine@qa_engine=hf",
        "logger=none",
        "sampling.max_tokens=12",
        "domain.qa_max_tokens=4",
        "lora.epochs=1",
        "lora.rank=4",
        "lora.alpha=8",
    ]


@pytest.mark.integration
def test_every_source_in_one_table(tiny_model_dir, tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(tiny_model_dir, policy)
    edits_file = tmp_path / "edits.jsonl"
    run_dir = tmp_path / "run"
    args = [
        *tiny_table2(tiny_model_dir),
        "domain.n_articles=2",
        "conditions=[base,passage,selfedit,openai,policy,file]",
        f"selfedit_sources.policy.path={policy}",
        f"selfedit_sources.file.path={edits_file}",
        "selfedit_sources.openai.engine.api_key_env=SEAL_TEST_KEY",
        f"hydra.run.dir={run_dir}",
    ]
    # The file row reads the self-edits the first article's title maps to; the second is missing.
    edits_file.write_text(
        json.dumps({"title": "Varnholt Lighthouse", "text": "The lighthouse is blue."}) + "\n"
    )
    with FakeOpenAIServer(reply=lambda body: GPT_SELF_EDIT) as server:
        args.append(f"selfedit_sources.openai.engine.base_url={server.base_url}")
        proc = seal_run(*args, env=RUN_ENV | {"SEAL_TEST_KEY": "sk-test"})
        requests = list(server.bodies)

    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["conditions"]
    assert list(rows) == ["base", "passage", "selfedit", "openai", "policy", "file"]
    assert rows["openai"]["label"] == "passage + GPT-4.1 self-edit"
    # The trained policy is both writer and inner-loop base; its baseline is its own no-update run.
    results = read_jsonl(run_dir / "results.jsonl")
    conditions = {r["condition"] for r in results}
    assert {"base", "passage", "selfedit", "openai", "policy", "policy/no_update"} <= conditions
    assert rows["policy"]["policy"] == str(policy) and rows["selfedit"]["policy"] == str(tiny_model_dir)
    assert rows["passage"]["baseline"] == rows["base"]["macro_accuracy"]
    assert rows["policy"]["baseline"] == summary_acc(results, "policy/no_update")

    # GPT-4.1 got the paper's prompt text as one chat user turn (no local chat template around it).
    assert len(requests) == 2
    content = requests[0]["messages"][-1]["content"]
    assert content.startswith("Let's read the following passage and") and "<|im_start|>" not in content
    openai_edits = read_jsonl(run_dir / "self_edits" / "openai.jsonl")
    assert all(e["text"] == GPT_SELF_EDIT and len(e["sequences"]) == 3 for e in openai_edits)

    # The file row: a matched title trains on the file's text, an unmatched one is a counted failure.
    file_edits = {e["title"]: e for e in read_jsonl(run_dir / "self_edits" / "file.jsonl")}
    assert sorted(e["status"] for e in file_edits.values()) == ["missing", "ok"]
    updates = {u["key"]: u for u in read_jsonl(run_dir / "updates.jsonl")}
    assert sum(1 for k, u in updates.items() if k.startswith("file-") and u["failed"]) == 1
    assert "GPT-4.1 self-edit" in proc.stdout and "no update" in proc.stdout
    # The rows as bars with their CIs, named in the printed table.
    png = run_dir / "table2.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and Path(summary["plots"]["table2"]).name == png.name
    assert summary["plots"]["table2"] in proc.stdout

    # Rerun: nothing resampled (the server is gone), nothing retrained, nothing regraded. Dropping
    # the server's base_url changes a result-affecting key, so the rerun must force it.
    sizes = {p: p.stat().st_size for p in run_dir.rglob("*.jsonl")}
    rerun = [a for a in args if "base_url" not in a]
    seal_run(*rerun, "resume=force", env=RUN_ENV | {"SEAL_TEST_KEY": "sk-test"})
    assert sizes == {p: p.stat().st_size for p in run_dir.rglob("*.jsonl")}


@pytest.mark.integration
def test_writers_compared_on_one_learner_with_samples_and_likelihood(tiny_model_dir, tmp_path):
    """`learner: run` judges a trained policy as a writer only: its self-edits update the run's model,
    whose no-update answers are the baseline. Greedy sampling makes a writer's self-edit the same
    whatever its seed, so the row's self-edits are the policy's (those of the policy's own row) and
    not the run model's. Two samples per article: each its own update; a row is their mean."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = tmp_path / "policy"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    model.save_pretrained(policy)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(policy)
    run_dir = tmp_path / "run"
    args = [
        *tiny_table2(tiny_model_dir),
        "domain.n_articles=3",
        "sampling.temperature=0",
        "domain.drop_cut_line=false",  # a 12-token self-edit is all cut line
        "conditions=[base,passage,selfedit,policy,policy_on_base]",
        f"selfedit_sources.policy.path={policy}",
        f"selfedit_sources.policy_on_base.path={policy}",
        "evaluate.samples=2",
        "evaluate.likelihood=true",
        "evaluate.compare=[[policy_on_base,selfedit],[selfedit,passage]]",
        f"hydra.run.dir={run_dir}",
    ]
    proc = seal_run(*args, env=RUN_ENV)
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["conditions"]
    on_base, own = rows["policy_on_base"], rows["policy"]
    assert on_base["policy"] == str(tiny_model_dir) and own["policy"] == str(policy)
    assert on_base["baseline"] == rows["base"]["macro_accuracy"]

    def texts(row: str) -> dict:
        return {
            (e["article"], e["sample"]): e["text"]
            for e in read_jsonl(run_dir / "self_edits" / f"{row}.jsonl")
        }

    assert len(texts("policy_on_base")) == 6 and texts("policy_on_base") == texts("policy")
    assert texts("policy_on_base") != texts("selfedit")
    # Every sample its own update and answers; the row value is the per-article mean over samples.
    updates = {u["key"] for u in read_jsonl(run_dir / "updates.jsonl")}
    assert {"policy_on_base-0000", "policy_on_base-0000-s1", "passage-0000"} <= updates
    assert "passage-0000-s1" not in updates
    results = read_jsonl(run_dir / "results.jsonl")
    assert {"policy_on_base", "policy_on_base_s1"} <= {r["condition"] for r in results}
    both = [
        summary_acc([r for r in results if r["article"] == a], c)
        for a in range(3)
        for c in ("selfedit", "selfedit_s1")
    ]
    assert rows["selfedit"]["macro_accuracy"] == pytest.approx(sum(both) / 6)
    assert rows["selfedit"]["samples"] == 2 and rows["passage"]["samples"] == 1
    assert set(rows["selfedit"]["noise_floor"]) >= {"mean", "ci_low", "ci_high", "n"}
    assert rows["selfedit"]["answer_logprob"]["noise_floor"]["n"] == 3
    assert "policy_on_base (log-prob)" in proc.stdout  # its noise-floor line
    # The dense measure per row (log-probs are negative), its gain, and the paired comparisons.
    for row in rows.values():
        lp = row["answer_logprob"]
        assert lp["ci_low"] <= lp["mean_logprob"] <= lp["ci_high"] < 0
    assert rows["passage"]["answer_logprob"]["gain"]["n"] == 3
    comparison = summary["comparisons"]["policy_on_base - selfedit"]
    assert comparison["accuracy"]["n"] == 3 and comparison["answer_logprob"]["n"] == 3
    assert "policy_on_base - selfedit (log-prob)" in proc.stdout and "log-prob [95% CI]" in proc.stdout

    # A rerun redoes nothing: every record is on disk.
    sizes = {p: p.stat().st_size for p in run_dir.rglob("*.jsonl")}
    seal_run(*args, env=RUN_ENV)
    assert sizes == {p: p.stat().st_size for p in run_dir.rglob("*.jsonl")}


def summary_acc(results: list[dict], condition: str) -> float:
    per_article: dict[int, list[bool]] = {}
    for r in results:
        if r["condition"] == condition:
            per_article.setdefault(r["article"], []).append(bool(r["correct"]))
    accs = [sum(v) / len(v) for v in per_article.values()]
    return sum(accs) / len(accs)


def test_a_file_source_gives_every_sample_an_earlier_run_wrote(hydra_ctx, tmp_path):
    """An earlier run's self_edits JSONL (several samples per article) is scored again sample by
    sample, so the same self-edits can be paired under another learner; a one-per-article file still
    gives one self-edit per article; an article the file lacks is missing (a failed update), an empty
    self-edit trains on the passage alone, as when it was sampled."""
    from conftest import compose_config

    from seal_runner.domains.knowledge.data import Article
    from seal_runner.domains.knowledge.sources import FileSource

    cfg = compose_config(["experiment=demo/table2_cpu"])
    articles = [Article(i, f"Title {i}", f"Context {i}.", ()) for i in range(3)]
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(
        "".join(
            json.dumps({"article": a, "sample": s, "title": f"Title {a}", "text": f"edit {a}.{s}"}) + "\n"
            for a in range(2)
            for s in range(4)
        )
    )
    edits = FileSource("earlier", str(earlier)).selfedits(
        cfg, None, None, articles, tmp_path / "a.jsonl", "m", 3
    )
    assert {k: e["text"] for k, e in edits.items() if e["status"] == "ok"} == {
        (a, s): f"edit {a}.{s}" for a in range(2) for s in range(3)
    }
    assert edits[(2, 0)]["status"] == "missing" and (2, 1) not in edits

    one = tmp_path / "one.jsonl"
    one.write_text(
        json.dumps({"title": "Title 1", "text": "only edit"})
        + "\n"
        + json.dumps({"title": "Title 2", "text": ""})
        + "\n"
    )
    edits = FileSource("one", str(one)).selfedits(cfg, None, None, articles, tmp_path / "b.jsonl", "m", 4)
    assert [(k, e["status"]) for k, e in sorted(edits.items())] == [
        ((0, 0), "missing"),
        ((1, 0), "ok"),
        ((2, 0), "empty"),
    ]
    assert edits[(0, 0)]["sequences"] == [] and edits[(2, 0)]["sequences"] == ["Title 2\nContext 2."]
