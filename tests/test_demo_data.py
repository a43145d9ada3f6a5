"""Sanity checks for the built-in knowledge-incorporation demo dataset."""

import json
from importlib.resources import files

import pytest


@pytest.fixture(scope="module")
def demo() -> list[dict]:
    path = files("seal_runner") / "demo_data" / "knowledge_demo.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_passage_count_and_unique_titles(demo: list[dict]) -> None:
    assert isinstance(demo, list)
    assert len(demo) >= 24
    titles = [item["title"] for item in demo]
    assert all(isinstance(t, str) and t.strip() for t in titles)
    assert len(set(titles)) == len(titles)


def test_context_lengths(demo: list[dict]) -> None:
    for item in demo:
        n_words = len(item["context"].split())
        assert 60 <= n_words <= 160, f"{item['title']}: {n_words} words"


def test_questions_and_answers(demo: list[dict]) -> None:
    for item in demo:
        questions = item["questions"]
        assert 4 <= len(questions) <= 5, item["title"]
        context = item["context"].lower()
        for qa in questions:
            assert qa["question"].strip(), item["title"]
            answer = qa["answer"].strip()
            assert answer, f"{item['title']}: empty answer"
            assert len(answer.split()) <= 6, f"{item['title']}: {answer!r} too long"
            assert answer.lower() in context, f"{item['title']}: {answer!r} not in context"
