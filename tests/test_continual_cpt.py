"""stage=continual (forgetting matrix) and stage=cpt (pooled continued pretraining) on a tiny model,
plus the matrix arithmetic on hand-made numbers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import seal_run

from seal_runner.domains.knowledge.continual import compare_table, empty_matrix, forgetting_stats, mean_matrix
from seal_runner.domains.knowledge.data import load_articles
from seal_runner.domains.knowledge.strategies import build_strategy
from seal_runner.stages.continual import run_sequences

NAN = math.nan
TINY = [
    "engine=hf",
    "engine@qa_engine=hf",
    "sampling.max_tokens=12",
    "domain.drop_cut_line=false",  # a random tiny model's self-edits are all cut at max_tokens
    "domain.qa_max_tokens=4",
]


def test_matrix_mean_ignores_unseen_cells():
    a = [[0.2, 0.4], [0.6, NAN], [0.4, 0.8]]
    b = [[0.4, 0.0], [1.0, NAN], [0.2, NAN]]  # a failed grade leaves a hole in one sequence only
    mean = mean_matrix([a, b])
    assert mean[0] == pytest.approx([0.3, 0.2])
    assert mean[1][0] == pytest.approx(0.8) and math.isnan(mean[1][1])
    assert mean[2] == pytest.approx([0.3, 0.8])


def test_forgetting_stats_on_a_hand_made_matrix():
    m = empty_matrix(3)
    m[0] = [0.1, 0.2, 0.3]
    m[1][0] = 0.6
    m[2][:2] = [0.4, 0.7]
    m[3] = [0.2, 0.5, 0.9]
    stats = forgetting_stats(m)
    assert stats["untouched_mean"] == pytest.approx(0.2)
    assert stats["mean_seen_by_step"] == pytest.approx([0.6, 0.55, 1.6 / 3])
    assert stats["diagonal_mean"] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert stats["forgetting_first_passage"] == pytest.approx(0.4)
    assert stats["mean_forgetting"] == pytest.approx((0.4 + 0.2) / 2)
    assert stats["newest_after_last_step"] == pytest.approx(0.9)


@pytest.mark.integration
def test_continual_matrix_shape_resume_and_artifacts(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "stage=continual",
        f"model.name_or_path={tiny_model_dir}",
        *TINY,
        "logger=wandb",
        "logger.mode=offline",
        "domain.n_articles=5",
        "continual.sequences=2",
        "continual.length=3",
        "lora.epochs=1",
        "lora.rank=4",
        "lora.alpha=8",
        f"hydra.run.dir={run_dir}",
    ]
    proc = seal_run(*args)
    assert "accuracy after t sequential self-edits" in proc.stdout
    matrix = json.loads((run_dir / "continual" / "matrix.json").read_text())
    assert len(matrix["per_sequence"]) == 2
    for m in [matrix["mean"], *matrix["per_sequence"]]:
        assert len(m) == 4 and all(len(row) == 3 for row in m)
        assert not any(math.isnan(v) for v in m[0])
        assert all(math.isnan(m[t][j]) == (j >= t) for t in range(1, 4) for j in range(3))
    assert (run_dir / "continual" / "heatmap.png").stat().st_size > 1000
    seq = run_dir / "continual" / "seq_00"
    results = [json.loads(line) for line in (seq / "results.jsonl").read_text().splitlines()]
    assert len({(r["condition"], r["article"]) for r in results}) == 3 + 1 + 2 + 3  # row 0 + steps 1..3
    assert [p.name for p in (seq / "models").iterdir()] == ["step_3"]  # earlier steps were freed
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(wandb_run.glob("*.wandb"))

    # Killed after step 2 of sequence 1: its step-3 records and model are gone; the rerun redoes
    # exactly that step and nothing else, and the matrix comes out the same.
    seq1 = run_dir / "continual" / "seq_01"
    for name in ("results.jsonl", "updates.jsonl", "self_edits.jsonl"):
        path = seq1 / name
        lines = path.read_text().splitlines()
        path.write_text("\n".join(line for line in lines if '"step3"' not in line) + "\n")
    edits = (seq1 / "self_edits.jsonl").read_text().splitlines()
    (seq1 / "self_edits.jsonl").write_text("\n".join(edits[:2]) + "\n")
    shutil.rmtree(seq1 / "models" / "step_3")
    sizes = {p: p.stat().st_size for p in (run_dir / "continual" / "seq_00").glob("*.jsonl")}
    seal_run(*args, "logger=none")
    again = json.loads((run_dir / "continual" / "matrix.json").read_text())
    assert json.dumps(again["per_sequence"]) == json.dumps(matrix["per_sequence"])
    assert sizes == {p: p.stat().st_size for p in (run_dir / "continual" / "seq_00").glob("*.jsonl")}


@pytest.mark.integration
def test_continual_runs_follow_the_reference_layout_and_aggregate(tiny_model_dir, tmp_path):
    """continual.runs=2: run r's sequences drawn from random.Random(seed + r) under run_<r>/seq_<s>,
    the matrix averaged over all sequences with per-run means, stds and the spread over runs."""
    run_dir = tmp_path / "run"
    args = [
        "stage=continual",
        f"model.name_or_path={tiny_model_dir}",
        *TINY,
        "logger=none",
        "domain.n_articles=5",
        "continual.runs=2",
        "continual.sequences=2",
        "continual.length=2",
        "lora.epochs=1",
        "lora.rank=4",
        "lora.alpha=8",
        f"hydra.run.dir={run_dir}",
    ]
    proc = seal_run(*args)
    assert "over 2 runs" in proc.stdout
    out = run_dir / "continual"
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("run_*/seq_*")) == [
        f"run_{r:02d}/seq_{s:02d}" for r in range(2) for s in range(2)
    ]
    matrix = json.loads((out / "matrix.json").read_text())
    assert len(matrix["per_sequence"]) == 4 and [p["run"] for p in matrix["per_run"]] == [0, 1]
    assert {"std_over_sequences", "std_across_runs", "stats_across_runs"} <= matrix.keys()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["sequences"] == 4
    assert summary["stats_across_runs"]["final_mean_seen"].keys() == {"mean", "std"}
    edits = [json.loads(x) for x in (out / "run_01" / "seq_00" / "self_edits.jsonl").read_text().splitlines()]
    expected = run_sequences(load_articles("builtin:demo", 0, 5), 2, 2, 42 + 1)[0]
    assert [e["article"] for e in edits] == [a.index for a in expected]
    sizes = {p: p.stat().st_size for p in out.glob("run_*/seq_*/*.jsonl")}
    seal_run(*args)  # a finished run is read back, nothing is redone
    assert sizes == {p: p.stat().st_size for p in out.glob("run_*/seq_*/*.jsonl")}


@pytest.mark.integration
def test_cpt_trains_one_model_per_row_and_micro_averages(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = seal_run(
        "stage=cpt",
        f"model.name_or_path={tiny_model_dir}",
        *TINY,
        "logger=none",
        "domain.n_articles=3",
        "domain.split_newlines=false",
        "cpt.samples_per_article=2",
        "cpt.rank=4",
        "cpt.alpha=8",
        "cpt.epochs=1",
        f"hydra.run.dir={run_dir}",
    )
    assert "after CPT" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["conditions"]
    assert list(rows) == ["base", "passage", "selfedit"] and summary["questions"] == 15
    # passage: 3 passages; selfedit: 3 articles x 2 self-edits x (1 self-edit + 1 passage copy)
    assert rows["passage"]["training"]["texts"] == 3 and rows["selfedit"]["training"]["texts"] == 12
    for name in ("passage", "selfedit"):
        assert (run_dir / "cpt" / name / "model" / "sft_done.json").exists()
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(results) == 3 * 15


def test_replay_mixes_a_seeded_sample_of_earlier_self_edits():
    replay = build_strategy("replay", 3)
    earlier = [["a1", "a2"], ["b1", "b2", "b3"]]
    mixed = replay.training_sequences(["n1", "n2"], earlier, seed=7)
    assert mixed[:2] == ["n1", "n2"] and len(mixed) == 5
    assert set(mixed[2:]) <= {"a1", "a2", "b1", "b2", "b3"} and len(set(mixed[2:])) == 3
    assert replay.training_sequences(["n1", "n2"], earlier, seed=7) == mixed
    assert replay.training_sequences(["n1"], [["a1"]], seed=7) == ["n1", "a1"]  # pool smaller than k
    assert replay.training_sequences([], earlier, seed=7) == []  # a failed self-edit stays failed
    assert build_strategy("merge", 3).training_sequences(["n1"], earlier, 7) == ["n1"]
    assert build_strategy("isolation", 3).learner("base", "step_2") == "base"
    with pytest.raises(ValueError, match="continual.strategy='ewc'"):
        build_strategy("ewc", 3)


def _adapter_bases(seq: Path) -> list[str]:
    updates = [json.loads(line) for line in (seq / "updates.jsonl").read_text().splitlines()]
    return [
        json.loads((Path(u["adapter"]) / "adapter_config.json").read_text())["base_model_name_or_path"]
        for u in updates
    ]


def test_retention_reward_penalises_the_probe_drop():
    retention = build_strategy("retention", 3, candidates=3, retention_lambda=0.5)
    assert retention.candidates == 3 and build_strategy("merge", 3).candidates == 1
    assert retention.reward(0.6, probe_before=0.8, probe_after=0.4) == pytest.approx(0.6 - 0.5 * 0.4)
    assert retention.reward(0.6, probe_before=0.4, probe_after=0.6) == pytest.approx(0.7)  # a gain helps
    assert retention.reward(0.6, None, None) == 0.6  # step 1: nothing earlier to forget
    with pytest.raises(ValueError, match="continual.candidates=1"):
        build_strategy("retention", 3, candidates=1)


def strategy_sequence(model_dir: Path, run_dir: Path, name: str) -> Path:
    """One 3-step sequence under strategy `name`, every strategy on the same settings; checks what
    all of them print and record, and returns the sequence's directory."""
    proc = seal_run(
        "stage=continual",
        f"model.name_or_path={model_dir}",
        *TINY,
        "logger=none",
        "domain.n_articles=4",
        "domain.split_newlines=true",
        "continual.sequences=1",
        "continual.length=3",
        "continual.keep_models=true",
        "continual.replay_sequences=2",
        "continual.candidates=2",
        "continual.retention_lambda=0.5",
        "lora.epochs=1",
        "lora.rank=4",
        "lora.alpha=8",
        f"continual.strategy={name}",
        f"hydra.run.dir={run_dir}",
    )
    assert f"[{name}]" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["strategy"] == name
    assert summary["cost"]["updates"] == 3 * (2 if name == "retention" else 1)
    return run_dir / "continual" / "seq_00"


@pytest.fixture(scope="module")
def merge_sequence(tiny_model_dir, tmp_path_factory) -> Path:
    """merge's sequence, which every other strategy is compared with: one run for the module (the
    same arguments for each comparison, so running it once per strategy repeated the same work)."""
    return strategy_sequence(tiny_model_dir, tmp_path_factory.mktemp("continual") / "merge", "merge")


@pytest.mark.integration
@pytest.mark.parametrize("strategy", ["replay", "isolation", "retention"])
def test_strategies_share_the_protocol_and_differ_only_in_learner_and_data(
    strategy, merge_sequence, tiny_model_dir, tmp_path
):
    """Same passages and step-1 self-edit as merge; replay trains on new + earlier sequences;
    isolation writes and trains every adapter on the untouched model and sums them."""
    runs = {
        "merge": merge_sequence,
        strategy: strategy_sequence(tiny_model_dir, tmp_path / strategy, strategy),
    }
    edits = {  # candidate 0 of each step (retention writes 2 per step; sample 0 is merge's)
        n: [e for e in map(json.loads, (p / "self_edits.jsonl").read_text().splitlines()) if e["sample"] == 0]
        for n, p in runs.items()
    }
    assert [e["article"] for e in edits["merge"]] == [e["article"] for e in edits[strategy]]
    if strategy != "retention":  # the HF engine seeds a batch, not a row: retention samples 2 at once
        assert edits["merge"][0]["text"] == edits[strategy][0]["text"]  # both written by the base model
    updates = [json.loads(x) for x in (runs[strategy] / "updates.jsonl").read_text().splitlines()]
    own = [len(e["sequences"]) for e in edits[strategy]]
    bases = _adapter_bases(runs[strategy])
    if strategy == "replay":
        assert [u["sequences"] for u in updates] == [own[0], own[1] + min(2, own[0]), own[2] + 2]
        assert bases[1:] == [str(runs[strategy] / "models" / f"step_{t}") for t in (1, 2)]
    elif strategy == "retention":
        _check_retention_choices(runs[strategy], updates, tiny_model_dir)
    else:
        assert [u["sequences"] for u in updates] == own
        assert set(bases) == {str(tiny_model_dir)}
        # step t's checkpoint is the base plus the sum of adapters 1..t
        from safetensors.torch import load_file

        def weight(step: int) -> torch.Tensor:
            path = runs[strategy] / "models" / f"step_{step}" if step else tiny_model_dir
            return load_file(str(path / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]

        expected = weight(0).float() + sum(_lora_delta(Path(updates[t - 1]["adapter"])) for t in (1, 2, 3))
        assert torch.allclose(weight(3).float(), expected, atol=1e-3)
        assert not torch.allclose(weight(3).float(), weight(0).float(), atol=1e-3)


def _lora_delta(adapter: Path, module: str = "layers.0.self_attn.q_proj", scale: float = 2.0):
    from safetensors.torch import load_file

    state = load_file(str(adapter / "adapter_model.safetensors"))
    a = next(v for k, v in state.items() if f"{module}.lora_A" in k)
    b = next(v for k, v in state.items() if f"{module}.lora_B" in k)
    return (b.float() @ a.float()) * scale


def _check_retention_choices(seq: Path, updates: list[dict], base_dir: Path) -> None:
    """Two candidates per step, each graded on passages 1..t; the merged one has the best reward,
    recomputed here from the recorded accuracies; step 1's model is the base plus that adapter."""
    from safetensors.torch import load_file

    assert [u["key"] for u in updates] == [f"step{t}.c{i}" for t in (1, 2, 3) for i in (0, 1)]
    choices = [json.loads(x) for x in (seq / "choices.jsonl").read_text().splitlines()]
    assert [c["step"] for c in choices] == [1, 2, 3]
    probe = [json.loads(x) for x in (seq / "probe.jsonl").read_text().splitlines()]
    assert {r["condition"] for r in probe} == {u["key"] for u in updates}
    for c in choices:
        assert (c["probe_before"] is None) == (c["step"] == 1)
        rewards = []
        for cand in c["candidates"]:
            drop = 0.0 if c["probe_before"] is None else c["probe_before"] - cand["probe_after"]
            assert cand["reward"] == pytest.approx(cand["new"] - 0.5 * drop)
            rewards.append(cand["reward"])
        assert c["chosen"] == c["candidates"][rewards.index(max(rewards))]["key"]
    chosen = next(u for u in updates if u["key"] == choices[0]["chosen"])
    name = "model.layers.0.self_attn.q_proj.weight"
    merged = load_file(str(seq / "models" / "step_1" / "model.safetensors"))[name].float()
    base = load_file(str(base_dir / "model.safetensors"))[name].float()
    assert torch.allclose(merged, base + _lora_delta(Path(chosen["adapter"])), atol=1e-3)


def test_compare_table_reports_forgetting_relative_to_merge():
    def summary(strategy: str, last_row: list[float], steps: int) -> dict:
        m = empty_matrix(3)
        m[0] = [0.1, 0.1, 0.1]
        m[1][0], m[2][:2], m[3] = 0.6, [0.5, 0.7], last_row
        return {
            "strategy": strategy,
            "sequences": 2,
            "matrix": m,
            "stats": forgetting_stats(m),
            "total_s": 12.0,
            "cost": {"inner_steps": steps, "train_tokens": 10 * steps},
        }

    merge = summary("merge", [0.2, 0.3, 0.9], 30)  # forgets (0.4 + 0.4) / 2
    replay = summary("replay", [0.4, 0.6, 0.9], 45)  # forgets (0.2 + 0.1) / 2
    table = compare_table([replay, merge])
    assert table.index("| merge |") < table.index("| replay |")  # the baseline leads
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| 0.400 | +0% |" in rows["merge"] and "| 45 | 450 |" in rows["replay"]
    assert "| 0.150 | +62% |" in rows["replay"]  # 1 - 0.15 / 0.4
    assert "| 3 | 0.40 | 0.60 | 0.90 |" in table  # replay's last matrix row
    with pytest.raises(ValueError, match="share a strategy"):
        compare_table([merge, merge])
