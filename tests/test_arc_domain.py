"""The ARC domain in the shared outer loop, without a model: behaviour cloning is a ReSTEM round with
reward = solved and `all_positive` selection.

A round's self-edits, inner updates and answers are seeded on disk as a finished (or resumed) run
leaves them, so `scored_round` and `improve` of stages/restem.py read them back and nothing samples,
trains or decodes: the stub engines fail if asked. The tokenizer is a stub too, with a chat template
that only joins the turns (the ARC prompts are built but never tokenised).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config as _compose
from omegaconf import DictConfig

from seal_runner.domains.arc.domain import ArcDomain
from seal_runner.domains.knowledge.domain import KnowledgeDomain
from seal_runner.errors import InputError
from seal_runner.records import append_jsonl
from seal_runner.selection import select
from seal_runner.stages.common import Engines, RunContext
from seal_runner.stages.restem import improve, scored_round

EDIT = {
    "use_basic_augmentations": True,
    "use_size_augmentations": False,
    "use_chain_augmentations": False,
    "use_repeat_augmentations": False,
    "strategy": "train_using_output_tokens",
    "learning_rate": 0.01,
    "num_train_epochs": 1,
}


class ChatTokenizer:
    chat_template = "joined turns"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **kwargs) -> str:
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class NoEngine:
    """Everything is on disk: asking it for a completion is a failed resume."""

    closed = False

    def generate(self, *args, **kwargs):
        raise AssertionError("the engine was asked for completions although every record is on disk")

    def close(self) -> None:
        self.closed = True


class Tracker:
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.tables: dict[str, list[dict]] = {}

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.logged.append(metrics)

    def table(self, name: str, rows: list[dict]) -> None:
        self.tables[name] = rows


def _run(cfg: DictConfig, run_dir: Path) -> RunContext:
    return RunContext(cfg, run_dir, "/policy_0", ChatTokenizer(), None, Tracker())


def seed_round(domain: ArcDomain, out: Path, solved: set[str], failed: frozenset[str] = frozenset()) -> None:
    """`train_samples_per_task` valid self-edits per training task, each one's update and (unless it
    failed) its answer; the unit keys in `solved` solved their task."""
    tasks = domain.training_contexts(0)
    samples = domain.cfg.domain.train_samples_per_task
    prompts = {t.task_id: domain.encoder.chat.selfedit_prompt(t.train) for t in tasks}
    edits, updates, results = [], [], []
    for t in tasks:
        for s in range(samples):
            key = f"{t.task_id}/s{s}"
            text = json.dumps({"sample": s, "task": t.task_id})  # any text: only `edit` is trained on
            edits.append(
                {"task": t.task_id, "attempt": s, "prompt": prompts[t.task_id], "text": text, "num_tokens": 9}
                | {"finish_reason": "stop", "status": "valid", "edit": EDIT}
            )
            updates.append(
                {"key": key, "task": t.task_id, "plan": {"num_train_epochs": 1}, "seconds": 1.0}
                | {"failed": "oom" if key in failed else False, "adapter": None if key in failed else "ad"}
            )
            if key not in failed:
                results.append(
                    {"key": key, "task": t.task_id, "solved": key in solved, "queries": 2, "parsed": 1}
                    | {"correct_answers": int(key in solved), "attempts": [], "answers": []}
                )
    append_jsonl(out / "self_edits.jsonl", edits)
    append_jsonl(out / "updates.jsonl", updates)
    append_jsonl(out / "results.jsonl", results)


def test_arc_presets_run_behaviour_cloning_as_restem(hydra_ctx: None) -> None:
    for preset in ("demo/arc_cpu", "paper/arc_fewshot"):
        cfg = _compose([f"experiment={preset}"])
        assert cfg.stage == "evaluate" and cfg.domain._target_ == "seal_runner.domains.arc.domain.ArcDomain"
        assert cfg.restem.reward == "solved" and cfg.restem.selection == "all_positive"
        assert cfg.restem.rounds == 1 and cfg.sft.rank == cfg.sft.alpha == 16  # sft=arc_bc
    knowledge = _compose([])
    assert knowledge.restem.reward == "inner" and knowledge.restem.selection == "best_of_k"


def test_each_domain_rejects_the_others_reward(hydra_ctx: None, tmp_path: Path) -> None:
    cfg = _compose(["experiment=demo/arc_cpu", "restem.reward=inner"])
    with pytest.raises(InputError, match=r"restem.reward=inner .* restem=arc_bc"):
        ArcDomain(_run(cfg, tmp_path), cfg.restem)
    cfg = _compose(["restem.reward=solved"])
    with pytest.raises(
        InputError, match=r"restem.reward=solved is not a knowledge reward; choose from inner"
    ):
        KnowledgeDomain(_run(cfg, tmp_path), cfg.restem)


def test_solved_self_edits_become_the_bc_pairs_in_task_order(hydra_ctx: None, tmp_path: Path) -> None:
    cfg = _compose(["experiment=demo/arc_cpu"])
    run = _run(cfg, tmp_path)
    domain = ArcDomain(run, cfg.restem)
    out = tmp_path / "round_0"
    first, second = (t.task_id for t in domain.training_contexts(0))
    # sample 1 of both tasks solved; the first task's sample 0 update failed (no adapter, no answer)
    seed_round(domain, out, solved={f"{first}/s1", f"{second}/s1"}, failed={f"{first}/s0"})
    engines = Engines(NoEngine(), NoEngine())

    candidates, _, edits = scored_round(domain, engines, "/policy_0", domain.training_contexts(0), out)
    assert len(edits) == len(candidates) == 2 * len(domain.training_contexts(0))
    rewards = {(c["task"], c["sample"]): c["reward"] for c in candidates}
    assert rewards[(first, 0)] == 0.0 and rewards[(first, 1)] == 1.0 and rewards[(second, 1)] == 1.0
    chosen = select(candidates, cfg.restem.selection)
    assert [(c["task"], c["sample"]) for c in chosen] == [(first, 1), (second, 1)]
    assert all(c["completion"] == edits[(c["task"], c["sample"])]["text"] for c in chosen)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["solved"] == 2 and summary["failed_updates"] == 1 and summary["pairs"] == len(edits)
    assert json.loads((out / "rewards.json").read_text()) == candidates
    assert domain.round_fields(edits, candidates) == {"selfedits": len(edits), "solved": 2}


def test_a_bc_round_goes_through_the_shared_improve(hydra_ctx: None, tmp_path: Path) -> None:
    """No self-edit solved its task: `improve` selects none, trains nothing and keeps the policy, and
    the round record carries the loop's fields and the domain's."""
    cfg = _compose(["experiment=demo/arc_cpu"])
    run = _run(cfg, tmp_path)
    domain = ArcDomain(run, cfg.restem)
    seed_round(domain, tmp_path / "round_0", solved=set())
    engines = Engines(NoEngine(), NoEngine())
    record: dict = {"round": 0}

    assert improve(run, domain, engines, "/policy_0", "/policy_0", 0, record) == "/policy_0"
    assert engines.sampler.closed and engines.qa.closed
    assert record["chosen"] == 0 and "sft" not in record and record["solved"] == 0
    assert record["rewards"]["mean_reward"] == 0.0 and record["rewards"]["mean_baseline"] is None
    assert json.loads((tmp_path / "round_0" / "sft.json").read_text()) == []
    assert len(run.tracker.tables["round_0/self_edits"]) == record["selfedits"]
    assert {"round_0/success_rate": 0.0} in run.tracker.logged
