"""Tasks with several test inputs (`domain.test_inputs`), without a model.

The reference trains one adapter per source task and self-edit and counts the task solved only when
every test input is right (few-shot/self-edit.py, few-shot/arclib/eval.py `evaluate`); `per_task`
(the default) does that, `split` makes each test input a task of its own. Synthetic identity tasks
(output = input) with two test inputs are answered by an engine that echoes each query's test input,
so an input is right exactly when its gold output equals it: "both" has both inputs right, "one" only
its first. Training is replaced by a stub that records the units it is given; the tokenizer is a stub
whose chat template only joins the turns and whose tokens are words.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config as _compose
from omegaconf import DictConfig

from seal_runner.domains.arc import domain as arc_domain
from seal_runner.domains.arc.data import ARCExample, ARCTask, split_test_inputs
from seal_runner.domains.arc.domain import ArcDomain, load_split
from seal_runner.domains.arc.pipeline import answer_units, eval_queries
from seal_runner.domains.arc.ttt_format import TTTEncoder, grid_format
from seal_runner.engines.base import Completion, LoraAdapter
from seal_runner.stages.common import Engines, RunContext

EDIT = (
    '{"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false, '
    '"use_chain_augmentations": false, "use_repeat_augmentations": false}, '
    '"training": {"strategy": "train_using_output_tokens", "learning_rate": 0.01, "num_train_epochs": 1}}'
)
A, B, C = [[1, 2], [3, 4]], [[5, 0], [6, 7]], [[8, 8], [0, 9]]
DEMOS = (ARCExample([[1, 0], [0, 2]], [[1, 0], [0, 2]]), ARCExample([[3, 4], [0, 0]], [[3, 4], [0, 0]]))
BOTH = ARCTask("both", "both", DEMOS, (ARCExample(A, A), ARCExample(B, B)))
ONE = ARCTask("one", "one", DEMOS, (ARCExample(A, A), ARCExample(B, C)))


class ChatTokenizer:
    chat_template = "joined turns"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False, **kwargs) -> str:
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [len(word) for word in text.split()]}


class EchoEngine:
    """Answers every query with its test input; samples `EDIT` as every self-edit."""

    def __init__(self) -> None:
        self.adapters: list[LoraAdapter | None] = []

    def generate(self, prompts, sampling, adapters=None, seeds=None) -> list[Completion]:
        if adapters is None:  # self-edit sampling
            return [Completion(EDIT, 90, "stop") for _ in prompts]
        self.adapters += adapters
        return [
            Completion(p.split("<user>")[1].split(" -> <assistant>")[0] + "#", 9, "stop") for p in prompts
        ]

    def close(self) -> None:
        pass


class Tracker:
    def log(self, metrics: dict, step: int | None = None) -> None:
        pass


@pytest.fixture
def cfg(hydra_ctx: None) -> DictConfig:
    return _compose(["experiment=demo/arc_cpu"])


def encoder(cfg: DictConfig) -> TTTEncoder:
    return TTTEncoder(ChatTokenizer(), grid_format(cfg.domain.grid_format), {}, cfg.domain.token_layout)


def test_per_task_is_the_default_and_the_paper_presets(hydra_ctx: None) -> None:
    for preset in ("demo/arc_cpu", "paper/arc_fewshot"):
        assert _compose([f"experiment={preset}"]).domain.test_inputs == "per_task"
    assert (
        _compose(["experiment=paper/arc_fewshot", "domain.test_inputs=split"]).domain.test_inputs == "split"
    )


def test_files_load_one_task_per_source_unless_split(hydra_ctx: None, tmp_path: Path) -> None:
    raw = {
        t.task_id: {
            "train": [{"input": ex.input.tolist(), "output": ex.output.tolist()} for ex in t.train],
            "test": [{"input": ex.input.tolist()} for ex in t.test],
        }
        for t in (ONE, ARCTask("single", "single", DEMOS, (ARCExample(C, C),)))
    }
    solutions = {"one": [A, C], "single": [C]}
    (tmp_path / "c.json").write_text(json.dumps(raw))
    (tmp_path / "s.json").write_text(json.dumps(solutions))
    files = ["domain.source=files", f"domain.train_challenges={tmp_path / 'c.json'}"]
    files += [f"domain.train_solutions={tmp_path / 's.json'}", "domain.train_task_ids=null"]

    whole = load_split(_compose(["experiment=demo/arc_cpu", *files]), "train")
    assert [(t.task_id, len(t.test)) for t in whole] == [("one", 2), ("single", 1)]
    assert [ex.output.tolist() for ex in whole[0].test] == [A, C]
    split = load_split(_compose(["experiment=demo/arc_cpu", *files, "domain.test_inputs=split"]), "train")
    assert [(t.task_id, t.source_id, len(t.test)) for t in split] == [
        ("one-0", "one", 1),
        ("one-1", "one", 1),
        ("single", "single", 1),
    ]


def test_each_test_input_gets_the_queries_it_gets_as_a_split_task(cfg: DictConfig) -> None:
    enc = encoder(cfg)
    per_input = eval_queries(cfg, enc, ONE)
    assert len(per_input) == 2 and all(kept for kept, _ in per_input)
    for (kept, dropped), subtask in zip(per_input, split_test_inputs(ONE), strict=True):
        ((alone, alone_dropped),) = eval_queries(cfg, enc, subtask)
        assert [p for _, p in kept] == [p for _, p in alone] and dropped == alone_dropped


def test_a_task_is_solved_only_when_every_test_input_is(cfg: DictConfig, tmp_path: Path) -> None:
    engine = EchoEngine()
    units = [(f"{t.task_id}/s0", t, LoraAdapter(f"ad-{t.task_id}", "/ad")) for t in (BOTH, ONE)]
    results = answer_units(cfg, engine, encoder(cfg), units, tmp_path / "results.jsonl")

    both, one = results["both/s0"], results["one/s0"]
    assert both["solved"] and [t["solved"] for t in both["tests"]] == [True, True]
    assert not one["solved"] and [t["solved"] for t in one["tests"]] == [True, False]
    assert one["tests"][1]["attempts"][0] == B  # voted per test input: its own echoed input
    assert one["queries"] == sum(t["queries"] for t in one["tests"]) > 0
    assert one["correct_answers"] == one["tests"][0]["queries"]  # every answer to input 0, none to 1
    # one adapter per unit answers all of its test inputs
    names = {a.name for a in engine.adapters}
    assert names == {"ad-both", "ad-one"} and len(engine.adapters) == both["queries"] + one["queries"]


def test_one_adapter_per_task_and_self_edit_and_bc_rewards_per_task(
    cfg: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`condition` samples self-edits per source task, trains one adapter per (task, self-edit) on the
    task's demos, and scores it on all its test inputs; the BC reward is the task's."""
    trained: list = []

    def train_units(cfg, policy, tokenizer, units, path, adapter_root, tracker) -> dict:
        trained.extend(units)
        plan = {"num_train_epochs": 1}
        return {
            u.key: {"key": u.key, "task": u.task.task_id, "plan": plan, "adapter": str(adapter_root / u.key)}
            | {"failed": False, "seconds": 0.0}
            for u in units
        }

    monkeypatch.setattr(arc_domain, "train_units", train_units)
    run = RunContext(cfg, tmp_path, "/policy_0", ChatTokenizer(), None, Tracker())
    domain = ArcDomain(run, cfg.restem)
    engine = EchoEngine()
    edits = domain.sample(engine, [BOTH, ONE], tmp_path / "round_0")
    samples = cfg.domain.train_samples_per_task
    assert sorted(edits) == [(t, s) for t in ("both", "one") for s in range(samples)]

    candidates = domain.score(Engines(engine, engine), "/policy_0", [BOTH, ONE], edits, tmp_path / "round_0")
    assert sorted(u.key for u in trained) == [f"{t}/s{s}" for t in ("both", "one") for s in range(samples)]
    assert all(u.task in (BOTH, ONE) and u.job.rows for u in trained)  # TTT data from the whole task
    assert {(c["task"], c["reward"]) for c in candidates} == {("both", 1.0), ("one", 0.0)}
    summary = json.loads((tmp_path / "round_0" / "summary.json").read_text())
    assert summary["pairs"] == 2 * samples and summary["solved"] == samples
    assert summary["solved_per_task"] == {"both": samples, "one": 0}
    assert (summary["ci_low"], summary["ci_high"]) == (0.0, 1.0)  # over 2 source tasks, not 4 inputs
    assert np.isclose(summary["success_rate"], 0.5)
