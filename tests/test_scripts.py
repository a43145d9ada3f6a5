"""scripts/prepare_squad.py and scripts/make_table.py on tiny hand-made inputs (no models, no network).

The conversion decides which passages and gold strings every later number is computed on, so its
conventions (one entry per paragraph, spaced titles, first answer as gold, the paper's seeded
selection) are pinned here; make_table is what turns a sweep into the paper's tables, so its rows are
checked verbatim.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
import types
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str) -> types.ModuleType:
    """scripts/ is not a package: import a script by path (registered so dataclasses can resolve it)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


prepare_squad = _load("prepare_squad")
make_table = _load("make_table")


# ---------------------------------------------------------------- prepare_squad


def _qa(question: str, *answers: str) -> dict:
    return {
        "question": question,
        "id": question,
        "answers": [{"text": a, "answer_start": 0} for a in answers],
    }


FAKE_SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {"context": "SB ctx 0", "qas": [_qa("Who won?", "Denver Broncos", "Broncos", "Denver")]},
                {
                    "context": "SB ctx 1",
                    "qas": [_qa("Where?", "Santa Clara", "Levi's Stadium"), _qa("When?", "2016")],
                },
                {"context": "SB ctx 2", "qas": [_qa("Who sang?", "Lady Gaga", "Gaga")]},
            ],
        },
        {
            "title": "Warsaw",
            "paragraphs": [
                {
                    "context": "W ctx 0",
                    "qas": [_qa("River?", "Vistula", "the Vistula"), _qa("Country?", "Poland")],
                },
                {
                    "context": "W ctx 1",
                    "qas": [_qa("Population?", "1.7 million", "1.7m", "about 1.7 million")],
                },
            ],
        },
        {
            "title": "Normans",
            "paragraphs": [
                {"context": "N ctx 0", "qas": [_qa("Where is Normandy?", "France", "in France")]},
                {
                    "context": "N ctx 1",
                    "qas": [_qa("Century?", "10th", "10th century"), _qa("Leader?", "Rollo")],
                },
                {"context": "N ctx 2", "qas": [_qa("Language?", "Norman", "Old Norman", "Norman French")]},
            ],
        },
    ],
}


@pytest.fixture
def squad_file(tmp_path: Path) -> Path:
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(FAKE_SQUAD))
    return path


def _convert(squad_file: Path, out: Path, *extra: str) -> list[dict]:
    assert prepare_squad.main(["--squad", str(squad_file), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_one_entry_per_paragraph_with_spaced_titles_and_first_answer(squad_file, tmp_path, capsys):
    articles = _convert(squad_file, tmp_path / "all.json")
    assert capsys.readouterr().out.startswith("wrote 8 articles, 11 questions to ")
    assert [a["context"] for a in articles] == [
        "SB ctx 0",
        "SB ctx 1",
        "SB ctx 2",
        "W ctx 0",
        "W ctx 1",
        "N ctx 0",
        "N ctx 1",
        "N ctx 2",
    ]
    assert [a["title"] for a in articles] == ["Super Bowl 50"] * 3 + ["Warsaw"] * 2 + ["Normans"] * 3
    assert articles[1]["questions"] == [
        {"question": "Where?", "answer": "Santa Clara"},
        {"question": "When?", "answer": "2016"},
    ]
    assert articles[4]["questions"] == [{"question": "Population?", "answer": "1.7 million"}]
    assert set(articles[0]) == {"title", "context", "questions"}


def test_seeded_selection_matches_manual_shuffle(squad_file, tmp_path, capsys):
    everything = _convert(squad_file, tmp_path / "all.json")
    expected = list(everything)
    random.Random(42).shuffle(expected)
    selected = _convert(squad_file, tmp_path / "sel.json", "--shuffle-seed", "42", "--start", "2", "--n", "3")
    assert selected == expected[2:5]
    questions = sum(len(a["questions"]) for a in expected[2:5])
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"wrote 3 articles, {questions} questions")
    assert _convert(squad_file, tmp_path / "head.json", "--start", "1", "--n", "2") == everything[1:3]


def test_output_loads_with_the_runner(squad_file, tmp_path):
    from seal_runner.domains.knowledge.data import load_articles

    out = tmp_path / "sel.json"
    _convert(squad_file, out, "--shuffle-seed", "42", "--n", "4")
    assert [a.title for a in load_articles(str(out))] == [a["title"] for a in json.loads(out.read_text())]


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"title": "x"}]))
    assert prepare_squad.main(["--squad", str(bad), "--out", str(tmp_path / "o.json")]) == 2
    assert "official SQuAD v1.1 layout" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_hf_rows_grouped_by_context_in_first_seen_order():
    rows = [
        {
            "title": "A_b",
            "context": "c1",
            "question": "q1",
            "answers": {"text": ["x", "y"], "answer_start": [0, 0]},
        },
        {"title": "C", "context": "c2", "question": "q2", "answers": {"text": ["z"], "answer_start": [0]}},
        {
            "title": "A_b",
            "context": "c1",
            "question": "q3",
            "answers": {"text": ["w", "x"], "answer_start": [0, 0]},
        },
    ]
    entries = prepare_squad.prepare(prepare_squad.from_hf_rows(rows), "hf", 0, -1, None)
    assert entries == [
        {
            "title": "A b",
            "context": "c1",
            "questions": [{"question": "q1", "answer": "x"}, {"question": "q3", "answer": "w"}],
        },
        {"title": "C", "context": "c2", "questions": [{"question": "q2", "answer": "z"}]},
    ]


def test_hf_without_datasets_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(prepare_squad.SourceUnavailable, match="`datasets` package.*--squad PATH"):
        prepare_squad.load_hf_split("validation")
    assert prepare_squad.main(["--hf", "--split", "validation", "--out", str(tmp_path / "o.json")]) == 2
    assert "--squad PATH" in capsys.readouterr().err


def test_hf_offline_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'squad' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(prepare_squad.SourceUnavailable, match="ConnectionError.*if offline.*--squad PATH"):
        prepare_squad.load_hf_split("train")


# ---------------------------------------------------------------- make_table


def _cond(label: str, acc: float, se: float) -> dict:
    return {"label": label, "macro_accuracy": acc, "se": se, "articles": 200, "micro_accuracy": acc}


def _round(r: int, base: float, selfedit: float, se: float) -> dict:
    return {
        "round": r,
        "policy": f"policy_{r}",
        "heldout": {
            "base": {"macro_accuracy": base, "se": se, "articles": 200},
            "selfedit": {"macro_accuracy": selfedit, "se": se, "articles": 200},
            "mean_selfedit_tokens": 100.0,
        },
    }


def _job(root: Path, name: str, overrides: list[str], summary: dict | None) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    return job


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "exp" / "2026-11-21" / "10-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    base, passage, selfedit = "base model (no update)", "train on passage", "passage + self-edit"
    _job(
        root,
        "0",
        ["experiment=paper/single", "selfedit_prompt=rewrite"],
        {
            "stage": "evaluate",
            "conditions": {"base": _cond(base, 0.327, 0.021), "selfedit": _cond(selfedit, 0.494, 0.03)},
        },
    )
    _job(
        root,
        "1",
        ["experiment=paper/single", "selfedit_prompt=implications"],
        {
            "stage": "evaluate",
            "conditions": {
                "base": _cond(base, 0.327, 0.021),
                "passage": _cond(passage, 0.335, 0.022),
                "selfedit": _cond(selfedit, 0.397, 0.024),
            },
        },
    )
    restem = ["stage=restem", "restem.rounds=2"]
    self_qa = _job(
        root,
        "2",
        [*restem, "selfedit_prompt=self_qa"],
        {
            "stage": "restem",
            "rounds": [
                _round(0, 0.33, 0.373, 0.02),
                _round(1, 0.33, 0.428, 0.02),
                _round(2, 0.33, 0.487, 0.02),
            ],
        },
    )
    # restem's per-round eval summaries have no .hydra: they must not become rows
    (self_qa / "eval" / "round_0").mkdir(parents=True)
    (self_qa / "eval" / "round_0" / "summary.json").write_text(
        json.dumps({"stage": "evaluate", "conditions": {}})
    )
    _job(
        root,
        "3",
        [*restem, "selfedit_prompt=rewrite"],
        {"stage": "restem", "rounds": [_round(0, 0.33, 0.494, 0.021), _round(1, 0.33, 0.553, 0.019)]},
    )
    _job(root, "10", [*restem, "selfedit_prompt=implications_long"], None)
    return root


EXPECTED_TABLE = """\
**evaluate**: Accuracy per condition (macro over articles, % ± SE)
common overrides: experiment=paper/single

| selfedit_prompt | base model (no update) | train on passage | passage + self-edit |
|---|---|---|---|
| implications | 32.7% ± 2.1 | 33.5% ± 2.2 | 39.7% ± 2.4 |
| rewrite | 32.7% ± 2.1 | – | 49.4% ± 3.0 |

**restem**: Held-out accuracy with self-edits per ReSTEM round (macro over articles, % ± SE)
common overrides: stage=restem restem.rounds=2

| selfedit_prompt | round 0 | round 1 | round 2 |
|---|---|---|---|
| rewrite | 49.4% ± 2.1 | 55.3% ± 1.9 | – |
| self_qa | 37.3% ± 2.0 | 42.8% ± 2.0 | 48.7% ± 2.0 |

incomplete (1 of 5 jobs):
- 10: stage=restem restem.rounds=2 selfedit_prompt=implications_long (no summary.json)
"""


def test_make_table_paper_layout(multirun, tmp_path, capsys):
    out = tmp_path / "table.md"
    assert make_table.main([str(multirun), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| implications | 32.7% ± 2.1 | 33.5% ± 2.2 | 39.7% ± 2.4 |" in printed.splitlines()
    assert "| self_qa | 37.3% ± 2.0 | 42.8% ± 2.0 | 48.7% ± 2.0 |" in printed.splitlines()
    assert printed == EXPECTED_TABLE
    assert out.read_text(encoding="utf-8") == EXPECTED_TABLE


def test_make_table_plot_draws_one_bar_per_job(tmp_path, capsys):
    """--plot writes a PNG beside the table for a sweep of restem jobs whose summaries carry CIs."""
    root = tmp_path / "sweep"
    for i, (prompt, acc) in enumerate([("rewrite", 0.30), ("self_qa", 0.45), ("implications", 0.25)]):
        final = _round(1, 0.0, acc, 0.05)
        final["heldout"]["selfedit"].update(ci_low=acc - 0.1, ci_high=acc + 0.1)
        _job(
            root,
            str(i),
            [f"selfedit_prompt={prompt}"],
            {"stage": "restem", "rounds": [_round(0, 0.0, 0.2, 0.05), final]},
        )
    out = tmp_path / "tables" / "prompts.md"
    assert make_table.main([str(root), "--out", str(out), "--plot"]) == 0
    png = tmp_path / "tables" / "prompts_restem.png"
    assert f"plot: {png}" in capsys.readouterr().out.splitlines()
    assert png.stat().st_size > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _arc(rate: float) -> dict:
    return {"success_rate": rate, "ci_low": rate / 2, "ci_high": min(1.0, 2 * rate), "solved": 1, "pairs": 3}


def test_make_table_arc_table1_and_its_plot(tmp_path, capsys):
    """ARC's stage=evaluate summaries (`table: table1`) get their own table, success rates with CIs,
    and a bar per job of its SEAL row; knowledge's stage=evaluate jobs in the same sweep keep theirs."""
    root = tmp_path / "sweep"
    for i, epochs in enumerate((2, 4)):
        conditions = {
            "icl": _arc(0.0) | {"label": "ICL"},
            "seal": _arc(0.25 * epochs / 2) | {"label": "SEAL"},
            "oracle": _arc(0.5) | {"label": "Oracle TTT"},
        }
        summary = {"stage": "evaluate", "table": "table1", "conditions": conditions}
        _job(root, str(i), [f"domain.oracle.num_train_epochs={epochs}"], summary)
    _job(
        root,
        "2",
        ["domain=knowledge"],
        {"stage": "evaluate", "conditions": {"base": _cond("base", 0.3, 0.02)}},
    )
    out = tmp_path / "tables" / "arc.md"
    assert make_table.main([str(root), "--out", str(out), "--plot"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert (
        "**table1**: Few-shot ARC success rate per method (% of (task, self-edit) pairs [95% CI over tasks])"
        in printed
    )
    assert "| domain.oracle.num_train_epochs | ICL | SEAL | Oracle TTT |" in printed
    assert "| 4 | 0.0% [0.0, 0.0] | 50.0% [25.0, 100.0] | 50.0% [25.0, 100.0] |" in printed
    assert "| knowledge | 30.0% ± 2.0 |" in printed  # its own table, not an ARC row
    png = tmp_path / "tables" / "arc_table1.png"
    assert f"plot: {png}" in printed and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_make_table_takes_a_former_stage_arc_summary_into_table1(tmp_path, capsys):
    """Summaries that stage=arc wrote (`stage: arc`, conditions without labels) join ARC's table,
    labelled by their condition keys."""
    root = tmp_path / "sweep"
    _job(root, "0", ["seed=1"], {"stage": "arc", "conditions": {"icl": _arc(0.0), "seal": _arc(0.25)}})
    assert make_table.main([str(root)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "| seed | icl | seal |" in printed and "| 1 | 0.0% [0.0, 0.0] | 25.0% [12.5, 50.0] |" in printed


def test_make_table_without_jobs_fails(tmp_path, capsys):
    assert make_table.main([str(tmp_path)]) == 2
    assert "no job dirs" in capsys.readouterr().err
