"""The invented-passage generator: training contexts a lexical grader can score and a policy cannot game.

ReSTEM reads slices of a generated set at run time, so a slice must equal the same rows of a longer
set; gold answers must sit verbatim and once in the passage, or the reward measures the grader, not the
self-edit; and the passages must vary enough that no single sentence template teaches the whole task.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from seal_runner.domains.knowledge.data import DataError, load_articles
from seal_runner.domains.knowledge.generator import check_article, generate_articles
from seal_runner.graders.lexical import normalize_answer


@pytest.fixture(scope="module")
def two_thousand() -> list[dict]:
    return generate_articles(2000, seed=0)


def test_deterministic_and_slice_stable() -> None:
    assert generate_articles(50, seed=1) == generate_articles(50, seed=1)
    full, tail = generate_articles(50, seed=1), generate_articles(40, seed=1, start=10)
    assert all(full[i] == tail[i - 10] for i in range(10, 50))


def test_seeds_differ() -> None:
    a, b = generate_articles(20, seed=0), generate_articles(20, seed=1)
    assert sum(x["context"] != y["context"] for x, y in zip(a, b, strict=True)) == 20
    assert not {x["title"] for x in a} & {y["title"] for y in b}


def test_answers_are_unambiguous(two_thousand) -> None:
    for article in two_thousand[:500]:
        check_article(article)  # the generator's own gate, re-applied
        answers = [q["answer"] for q in article["questions"]]
        assert 8 <= len(answers) <= 10
        assert len(set(answers)) == len(answers)
        context = f" {normalize_answer(article['context'])} "
        for a in answers:
            assert a in article["context"]
            assert context.count(f" {normalize_answer(a)} ") == 1
            assert a.lower() not in article["title"].lower()


def test_passage_shape(two_thousand) -> None:
    words = [len(a["context"].split()) for a in two_thousand[:500]]
    sentences = [len(re.split(r"(?<=\.) (?=[A-Z])", a["context"])) for a in two_thousand[:500]]
    assert 100 <= sum(words) / len(words) <= 170
    assert min(sentences) >= 6 and max(sentences) <= 9


def test_titles_unique_and_not_demo(two_thousand) -> None:
    titles = [a["title"] for a in two_thousand]
    assert len(set(titles)) == len(titles)
    demo = json.loads((files("seal_runner") / "demo_data" / "knowledge_demo.json").read_text())
    demo_titles = {a["title"].lower() for a in demo}
    for seed in range(3):
        assert not demo_titles & {a["title"].lower() for a in generate_articles(2000, seed)}


def test_variety(two_thousand) -> None:
    sample = two_thousand[:200]
    assert len({a["kind"] for a in sample}) >= 8
    # A sentence's skeleton: names, numbers and the title masked, so only the wording is left.
    skeletons = Counter()
    for a in sample:
        text = a["context"].replace(a["title"], "T")
        for s in re.split(r"(?<=\.) (?=[A-Z])", text):
            skeletons[re.sub(r"\b[A-Z][a-z]+\b|\d+", "X", s)] += 1
    total = sum(skeletons.values())
    assert skeletons.most_common(1)[0][1] / total < 0.02
    questions = Counter(q["question"] for a in sample for q in a["questions"])
    assert questions.most_common(1)[0][1] / questions.total() < 0.02


def test_load_articles_generated() -> None:
    articles = load_articles("generated:3", 5, 7)
    expected = generate_articles(7, seed=3, start=5)
    assert [a.index for a in articles] == list(range(7))
    assert [(a.title, a.context) for a in articles] == [(e["title"], e["context"]) for e in expected]
    assert [q.answer for q in articles[0].questions] == [q["answer"] for q in expected[0]["questions"]]
    with pytest.raises(DataError, match="needs a count"):
        load_articles("generated:3", 0, -1)
    with pytest.raises(DataError, match="integer seed"):
        load_articles("generated:three", 0, 2)


def test_script_writes_loadable_file(tmp_path) -> None:
    path = Path(__file__).resolve().parents[1] / "scripts" / "generate_passages.py"
    spec = importlib.util.spec_from_file_location("generate_passages", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gen.json"
    assert script.main(["--n", "4", "--seed", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == generate_articles(4, seed=2)
    assert [a.title for a in load_articles(str(out))] == [a["title"] for a in generate_articles(4, seed=2)]
