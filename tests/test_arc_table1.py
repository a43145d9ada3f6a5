"""ARC's `stage=evaluate` (Table 1) end to end on the tiny random model: all four conditions, BC, resume.

The random model never writes valid JSON, so its self-edit attempts exercise the re-sampling budget;
one earlier run's records are seeded into round_0 (a valid self-edit per training task, one of them
already scored as solved) so test-time training of self-edits, behaviour cloning and the SEAL
condition on the cloned policy all run, as they would when resuming a real run. The BC round is a
round of the shared outer loop (stages/restem.py `improve`: reward = solved, `all_positive`).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import seal_run

from seal_runner.domains.arc.generator import generate_tasks
from seal_runner.domains.arc.selfedit import parse_selfedit
from seal_runner.domains.arc.ttt_format import TTTEncoder, grid_format
from seal_runner.models import load_tokenizer
from seal_runner.records import append_jsonl

FAMILIES = ["flip_ud", "crop_to_object"]
EDIT = (
    '{"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false, '
    '"use_chain_augmentations": false, "use_repeat_augmentations": false}, '
    '"training": {"strategy": "train_using_output_tokens", "learning_rate": 0.01, "num_train_epochs": 1}}'
)


def run_arc(model_dir: Path, run_dir: Path) -> subprocess.CompletedProcess:
    return seal_run(
        "experiment=demo/arc_cpu",
        f"model.name_or_path={model_dir}",
        "logger=none",
        f"domain.generated.families=[{','.join(FAMILIES)}]",
        "domain.generated.train_per_family=1",
        "domain.generated.eval_per_family=1",
        "domain.train_samples_per_task=1",
        "domain.eval_samples_per_task=1",
        "domain.max_sample_attempts=2",
        "domain.max_ttt_examples=4",
        "domain.answer_max_tokens=8",
        "domain.oracle.num_train_epochs=1",
        "sampling.max_tokens=8",
        "lora.rank=4",
        "lora.alpha=8",
        "sft.rank=4",
        "sft.alpha=8",
        "sft.epochs=1",
        f"hydra.run.dir={run_dir}",
        timeout=900,
    )


def seed_round_0(model_dir: Path, run_dir: Path) -> list[str]:
    """A valid self-edit per training task, as an earlier run would have recorded it; the first one
    already scored as solved (the random model cannot solve anything itself)."""
    encoder = TTTEncoder(load_tokenizer(str(model_dir)), grid_format("numpy"), {"date_string": "26 Jul 2024"})
    tasks = [replace(t, task_id=f"{t.task_id}-train1") for t in generate_tasks(FAMILIES, 1, 1)]
    edit = asdict(parse_selfedit(EDIT))
    records = [
        {
            "task": t.task_id,
            "attempt": 0,
            "prompt": encoder.chat.selfedit_prompt(t.train),
            "text": EDIT,
            "num_tokens": 90,
            "finish_reason": "stop",
            "status": "valid",
            "edit": edit,
        }
        for t in tasks
    ]
    append_jsonl(run_dir / "round_0" / "self_edits.jsonl", records)
    solved = {"key": f"{tasks[0].task_id}/s0", "task": tasks[0].task_id, "solved": True, "attempts": []}
    counts = {"queries": 0, "dropped_queries": 0, "parsed": 0, "correct_answers": 0, "answers": []}
    append_jsonl(run_dir / "round_0" / "results.jsonl", [solved | counts])
    return [t.task_id for t in tasks]


@pytest.mark.integration
def test_arc_table1_end_to_end_and_resume(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    train_ids = seed_round_0(tiny_model_dir, run_dir)
    proc = run_arc(tiny_model_dir, run_dir)
    for row in ("ICL", "TTT + Self-Edit (w/o prior RL)", "SEAL", "Oracle TTT"):
        assert f"| {row}" in proc.stdout

    summary = json.loads((run_dir / "summary.json").read_text())
    conditions = summary["conditions"]
    assert summary["stage"] == "evaluate" and summary["table"] == "table1"
    assert list(conditions) == ["icl", "ttt_base", "seal", "oracle"]  # the paper's row order
    assert all(c["pairs"] == 2 for c in conditions.values())  # 2 eval tasks x 1 self-edit
    base = conditions["ttt_base"]
    assert base["invalid_attempts"] == 2 * 2 and base["missing_selfedits"] == 2  # budget spent, counted
    assert conditions["oracle"]["scored"] == 2 and conditions["icl"]["scored"] == 2
    assert conditions["icl"]["mean_queries"] > 0
    assert all(c["ci_low"] <= c["success_rate"] <= c["ci_high"] for c in conditions.values())
    assert (run_dir / "table1.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["plots"]["table1"] in proc.stdout and "table1.png" in (run_dir / "table.md").read_text()

    round_0 = run_dir / "round_0"
    updates = [json.loads(line) for line in (round_0 / "updates.jsonl").read_text().splitlines()]
    assert sorted(u["task"] for u in updates) == sorted(train_ids)
    assert all(u["steps"] > 0 and u["adapter"] for u in updates)
    assert all(u["plan"]["augmentation_groups"] == ["basic"] for u in updates)
    rewards = json.loads((round_0 / "rewards.json").read_text())  # the shared loop's candidates
    assert [(c["task"], c["reward"]) for c in rewards] == [(train_ids[0], 1.0), (train_ids[1], 0.0)]
    sft = json.loads((round_0 / "sft.json").read_text())
    assert [p["task"] for p in sft] == [train_ids[0]] and sft[0]["completion"] == EDIT
    assert (round_0 / "policy" / "sft_done.json").exists()
    assert summary["final_policy"] == str(round_0 / "policy")
    assert (run_dir / "eval" / "seal" / "self_edits.jsonl").exists()

    files = sorted(
        p
        for p in run_dir.rglob("*.json*")
        if not {".hydra", "logs"} & set(p.parts) and p.name != "summary.json"
    )
    before = {p: p.read_bytes() for p in files}
    run_arc(tiny_model_dir, run_dir)  # rerun: nothing new sampled, trained or decoded
    assert {p: p.read_bytes() for p in files} == before
