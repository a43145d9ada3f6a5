"""Our code checked against the files the reference implementation saved, not by eye (issue #14).

Reference: github.com/Continual-Intelligence/SEAL at commit 4cb1e7d4350c62403daee8c6723e6184886cb304.
The excerpts under tests/data/knowledge_reference_*.json name the files they come from (their "source"
field and each entry's "path"). The reference saved self-edit completions, ranked candidates with the
SFT targets picked from them, and graded answers with the judge's boolean verdict; it saved neither
the training sequences themselves nor the judge's reply text, nor any ARC predictions or votes.

Two differences these files showed are pinned by tests: the passage-only CPT pool (reproduced by
`cpt.passage_title_sequence`) and the ranking of rewards equal but for the last float bit (kept, a
deviation in the README's table).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from seal_runner.domains.knowledge.data import Article
from seal_runner.domains.knowledge.selfedit import is_self_qa, selfedit_to_sequences
from seal_runner.graders.base import GradeItem
from seal_runner.graders.llm_judge import LLMJudgeGrader, is_yes
from seal_runner.openai_api import ChatResult
from seal_runner.selection import select
from seal_runner.stages.cpt import passage_texts

DATA = Path(__file__).parent / "data"
SELFEDITS = json.loads((DATA / "knowledge_reference_selfedits.json").read_text(encoding="utf-8"))
RANKING = json.loads((DATA / "knowledge_reference_ranking.json").read_text(encoding="utf-8"))
GRADED = json.loads((DATA / "knowledge_reference_graded.json").read_text(encoding="utf-8"))


# ---- The reference's own functions, copied verbatim (only renamed) from its commit 4cb1e7d. ----
# knowledge-incorporation/src/utils.py: _split_segments, build_train_sequences, parse_yes_no.
TRAINING_SEQUENCE_TEMPLATE = "{title}\n{completion_text}"
_yes_re = re.compile(r"\b(yes)\b", re.I)
_no_re = re.compile(r"\b(no)\b", re.I)


def reference_parse_yes_no(text: str) -> bool:
    if _yes_re.search(text) and not _no_re.search(text):  # noqa: SIM103 (verbatim)
        return True
    return False


def _reference_split_segments(text: str) -> list[str]:
    return [seg.strip() for seg in text.split("---") if seg.strip()]


def reference_build_train_sequences(
    completion_raw: str, context: str, title: str, *, split_newlines: bool = False
) -> list[str]:
    segs = _reference_split_segments(completion_raw) or [completion_raw.strip()]
    if split_newlines:
        if re.search(r"Question\s+\d+:", completion_raw) and re.search(r"Answer\s*:", completion_raw):
            segs = re.split(r"\n(?=Question\s+\d+:)", completion_raw.strip())
            if not segs[0].lstrip().startswith("Question"):
                segs[0] = "Question 1: " + segs[0].strip()
        else:
            segs = [ln.strip() for seg in segs for ln in seg.splitlines() if ln.strip()]
            if len(segs) > 1 and segs[1].startswith("1."):
                segs = segs[1:]
    seqs = [TRAINING_SEQUENCE_TEMPLATE.format(title=title, completion_text=s) for s in segs]
    seqs.append(TRAINING_SEQUENCE_TEMPLATE.format(title=title, completion_text=context.strip()))
    return seqs


# knowledge-incorporation/src/EM/build_SFT_dataset.py: _top_k (over the excerpt's fields).
def reference_top_k(comps: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    return sorted(comps, key=lambda c: c["stats"]["adapter_mean"], reverse=True)[:k]


# ---- 1. the same sequences ----
def _entry_id(entry: dict) -> str:
    return f"{entry['path'].rsplit('/', 1)[-1]}#{entry['article']}.{entry['completion']}"


PLAIN = [e for e in SELFEDITS["selfedits"] if not (e["split_newlines"] and is_self_qa(e["text"]))]
SELF_QA = [e for e in SELFEDITS["selfedits"] if e["split_newlines"] and is_self_qa(e["text"])]
CPT_NAIVE = SELFEDITS["cpt_runs"]["knowledge-incorporation/results/cpt/cpt_naive.json"]
EMPTY = next(e for e in SELFEDITS["selfedits"] if not e["text"].strip())


def ours(entry: dict, split_newlines: bool | None = None) -> list[str]:
    sn = entry["split_newlines"] if split_newlines is None else split_newlines
    return selfedit_to_sequences(entry["text"], entry["title"], entry["context"], split_newlines=sn)


def reference(entry: dict, split_newlines: bool | None = None) -> list[str]:
    sn = entry["split_newlines"] if split_newlines is None else split_newlines
    return reference_build_train_sequences(entry["text"], entry["context"], entry["title"], split_newlines=sn)


@pytest.mark.parametrize("entry", PLAIN, ids=_entry_id)
def test_selfedit_sequences_are_the_references(entry: dict) -> None:
    """Self-edits the reference trained on (completions[].text of the query_server result files in
    knowledge-incorporation/results/query_server/, each with its run's split_newlines flag; see the
    entry's path): our sequences equal, string for string, what the reference's build_train_sequences
    (copied verbatim above; the reference saved no sequences) makes of them: preamble drop, `---`
    segments, one line per example, the title prefix and the stripped passage appended last."""
    assert ours(entry) == reference(entry)


@pytest.mark.parametrize("entry", SELF_QA, ids=_entry_id)
def test_self_qa_sequences_are_the_references_but_for_trailing_whitespace(entry: dict) -> None:
    """Self-QA self-edits from the reference's alternate-prompt runs
    (results/query_server/alternate_prompts/*/..._prompt-self-qa.json, split_newlines on): one sequence
    per "Question N:", "Question 1: " put before a first question that lacks it, as the reference's
    rule. The one, documented (selfedit.py), deviation: the reference keeps the newline that ends each
    question's chunk ("...Answer: X\\n"), we strip it. Across all 17,546 distinct saved completions this
    is the only difference with split_newlines on (241 self-QA completions)."""
    ref = reference(entry)
    assert ours(entry) == [s.rstrip() for s in ref]
    assert any(s != s.rstrip() for s in ref)  # the deviation is real on this entry


def test_reference_copy_reproduces_the_saved_cpt_sequence_count() -> None:
    """knowledge-incorporation/results/cpt/cpt_naive.json: CPT.py with k_completions=0 passes an empty
    completion per article to build_train_sequences (split_newlines off) and saved train_sequences=400
    for 200 articles: two sequences each, "{title}\\n" and "{title}\\n{context}". Checks our verbatim
    copy against a number the reference itself saved."""
    assert (CPT_NAIVE["k_completions"], CPT_NAIVE["split_newlines"]) == (0, False)
    per_article = reference(EMPTY, split_newlines=False)
    assert per_article == [f"{EMPTY['title']}\n", f"{EMPTY['title']}\n{EMPTY['context'].strip()}"]
    assert len(per_article) * CPT_NAIVE["n_articles"] == CPT_NAIVE["train_sequences"] == 400
    # With split_newlines on (results/query_server/eval/naive.json) the empty self-edit adds nothing.
    assert ours(EMPTY) == reference(EMPTY) == [f"{EMPTY['title']}\n{EMPTY['context']}"]


def test_cpt_passage_row_with_the_title_sequence_is_the_references_pool() -> None:
    """knowledge-incorporation/results/cpt/cpt_naive.json (train_sequences=400 for n_articles=200): with
    `cpt.passage_title_sequence` (paper/knowledge_cpt) stage=cpt's passage row trains exactly the
    reference's sequences for an empty completion; without it, the passage alone."""
    article = Article(0, EMPTY["title"], EMPTY["context"], ())
    assert passage_texts([article], title_sequence=True) == reference(EMPTY, split_newlines=False)
    assert len(passage_texts([article] * CPT_NAIVE["n_articles"], True)) == CPT_NAIVE["train_sequences"]
    assert passage_texts([article], title_sequence=False) == [f"{EMPTY['title']}\n{EMPTY['context']}"]


# ---- ranked candidates -> the SFT targets the reference picked ----
def _our_pick(article: dict) -> str:
    candidates = [
        {"context": 0, "sample": j, "reward": reward, "sha": sha}
        for j, (reward, sha) in enumerate(zip(article["adapter_mean"], article["text_sha1"], strict=True))
    ]
    [best] = select(candidates, "best_of_k")
    return best["sha"]


def _reference_pick(article: dict) -> str:
    comps = [
        {"stats": {"adapter_mean": reward}, "sha": sha}
        for reward, sha in zip(article["adapter_mean"], article["text_sha1"], strict=True)
    ]
    return reference_top_k(comps, 1)[0]["sha"]


def _articles(groups: list[dict]) -> list[tuple[str, dict]]:
    return [(g["rank_file"].rsplit("/", 1)[-1], a) for g in groups for a in g["articles"]]


def test_the_excerpt_is_the_references_selection() -> None:
    """Sanity of the ranking excerpt: the reference's _top_k (build_SFT_dataset.py, copied above) on
    the saved adapter_means of results/query_server/train/rank_iter{0,1}.json and the alternate-prompt
    rankings picks exactly the completion the saved SFT file (data/synthetic_data/EM_SFT/...) holds."""
    for name, article in _articles(RANKING["main"] + RANKING["last_bit_ties"]):
        assert _reference_pick(article) == article["sft_completion_sha1"], (name, article["title"])


def test_best_of_k_picks_the_references_sft_targets() -> None:
    """knowledge-incorporation/results/query_server/train/rank_iter0.json -> EM_SFT/sft_best1of5_iter0.jsonl
    and rank_iter1.json -> sft_best1of5_iter1.jsonl (the paper's two ReSTEM rounds): our `best_of_k`
    picks the same completion (by sha1 of its stripped text) on every excerpted article, including
    every tie at the top, which both break towards the earliest sample. (All 100 articles of the two
    files agree; the excerpt keeps the tied ones and a few others.)"""
    picks = [(name, a["title"], _our_pick(a)) for name, a in _articles(RANKING["main"])]
    assert picks == [(name, a["title"], a["sft_completion_sha1"]) for name, a in _articles(RANKING["main"])]


def test_best_of_k_keeps_the_earliest_of_last_bit_ties_where_the_reference_takes_the_larger() -> None:
    """The README's deviation, on knowledge-incorporation/results/query_server/alternate_prompts/train/
    rank_iter0_prompt-rewrite.json (articles 42, 45), rank_iter0_prompt-very-long.json (2) and
    rank_iter1_prompt-rewrite.json (9, 28) against the matching EM_SFT/alternate_prompts/
    sft_best1of5_*.jsonl rows: two rewards equal but for the last float bit tie under our `best_of_k`
    (the earliest sample wins), while the reference's sort took the larger float as its SFT target."""
    for name, article in _articles(RANKING["last_bit_ties"]):
        rewards = article["adapter_mean"]
        top = max(rewards)
        tied = [j for j, r in enumerate(rewards) if abs(r - top) <= 1e-9]
        assert len(tied) > 1 and len({rewards[j] for j in tied}) > 1, (name, rewards)  # a last-bit tie
        assert _our_pick(article) == article["text_sha1"][tied[0]]
        assert (
            article["sft_completion_sha1"] == article["text_sha1"][rewards.index(top)] != _our_pick(article)
        )


# ---- 2. the same verdict rule on its graded answers ----
class EchoJudge:
    """A chat client whose reply is the reference judge's saved verdict for that student answer."""

    model = "reference-gpt-4.1"

    def __init__(self, verdicts: dict[str, bool]) -> None:
        self.verdicts = verdicts

    def complete_many(self, conversations: list, *, on_failure: Any = None, **_: Any) -> list[ChatResult]:
        replies = []
        for [message] in conversations:
            pred = message["content"].split("\nStudent answer: ", 1)[1].split("\nIs the student answer")[0]
            replies.append(ChatResult(text="Yes" if self.verdicts[pred] else "No"))
        return replies


def _graded_items() -> list[GradeItem]:
    return [
        GradeItem(question=f"Topic: {g['title']}\n{g['question']}", gold=g["gold"], prediction=g["answer"])
        for g in GRADED["graded"]
    ]


def _grade(injection_guard: bool) -> list[bool | None]:
    verdicts = {g["answer"].strip(): g["correct"] for g in GRADED["graded"]}
    grader = LLMJudgeGrader(EchoJudge(verdicts), injection_guard=injection_guard)  # type: ignore[arg-type]
    return [v.correct for v in grader.grade(_graded_items())]


def test_guard_off_keeps_every_saved_verdict() -> None:
    """Answers graded by the reference's GPT-4.1 judge (completions[].questions[].<side>_answer and
    <side>_correct of the result files under knowledge-incorporation/results/query_server/ named per
    entry), all containing a phrase our injection guard looks for. The reference saved no reply text,
    so the judge's reply is replayed from its boolean; with the guard off (the paper presets) our
    grader returns the saved verdict on every one."""
    assert _grade(injection_guard=False) == [g["correct"] for g in GRADED["graded"]]


def test_guard_on_overrules_these_saved_yes_verdicts() -> None:
    """Same file entries as above. With the guard on (our default) the first 9 saved "yes" verdicts
    are overruled: genuine answers the judge accepted that say "previous" or end in the base model's
    runaway "You are an AI assistant..." text and miss the gold by the lexical check (e.g. "The Yellow
    River.You are an AI assistant..." against "the Yellow River"). Over every graded answer the
    reference saved (99,146) the guard would flip 51 "yes" verdicts (31 distinct answers), none an
    attempt to instruct the judge. The other 5 keep their verdict (gold found, or already "no")."""
    saved = [g["correct"] for g in GRADED["graded"]]
    flipped = [
        i
        for i, (ours_, ref) in enumerate(zip(_grade(injection_guard=True), saved, strict=True))
        if ours_ != ref
    ]
    assert flipped == list(range(9))
    assert all(saved[i] is True for i in flipped)


@pytest.mark.parametrize(
    "reply",
    [
        "yes",
        "Yes.",
        "YES!",
        "no",
        "No.",
        "yes, no",
        "Yes - not quite",
        "yesterday",
        "Nope",
        "I'd say yes",
        "",
    ],
)
def test_is_yes_is_the_references_parse_yes_no(reply: str) -> None:
    """knowledge-incorporation/src/utils.py parse_yes_no (copied verbatim above) and our is_yes agree.
    Not a saved file: the reference kept only the verdict booleans, no reply text."""
    assert is_yes(reply) is reference_parse_yes_no(reply)
