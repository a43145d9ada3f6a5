"""Self-edit → training sequences and the knowledge prompts, on the cases the paper's code handles.

The expected values follow /work/shared/docs/seal-method.md §2 and the paper's reference
`build_train_sequences`: what the inner loop trains on decides every reported number.
"""

from __future__ import annotations

from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from seal_runner.config import SelfEditPromptConfig
from seal_runner.domains.knowledge.selfedit import selfedit_to_sequences, split_examples, split_segments
from seal_runner.prompts import qa_prompt, selfedit_prompt

TITLE, CONTEXT = "T", "C"
PASSAGE = f"{TITLE}\n{CONTEXT}"


def seqs(completion: str, **kwargs: bool | str) -> list[str]:
    return selfedit_to_sequences(completion, TITLE, CONTEXT, **kwargs)


# --- numbered lists and preambles -------------------------------------------------------------------


def test_numbered_list_preamble_dropped() -> None:
    """Line 2 starting "1." marks line 1 as chatter, not content; the numbers themselves stay."""
    assert seqs("Here are some implications:\n1. A\n2. B") == ["T\n1. A", "T\n2. B", PASSAGE]


def test_numbered_list_without_preamble_kept_whole() -> None:
    assert seqs("1. A\n2. B\n3. C") == ["T\n1. A", "T\n2. B", "T\n3. C", PASSAGE]


def test_preamble_kept_when_drop_disabled() -> None:
    assert split_examples(["Here are some implications:\n1. A"], drop_preamble=False) == [
        "Here are some implications:",
        "1. A",
    ]


def test_only_line_one_is_ever_dropped() -> None:
    """A later line before a "1." is content: only the line-1/line-2 rule applies."""
    assert split_examples(["X\nY\n1. A"]) == ["X", "Y", "1. A"]


def test_plain_lines_blank_lines_and_indentation() -> None:
    """One example per non-empty line, each stripped."""
    assert split_examples(["  first fact  \n\n\n\tsecond fact\n   \n"]) == ["first fact", "second fact"]


def test_single_line_is_one_example() -> None:
    assert seqs("Only one implication.") == ["T\nOnly one implication.", PASSAGE]


def test_preamble_before_separator_dropped_like_the_paper() -> None:
    """Reference: lines of all segments are flattened, then line 1 is dropped iff line 2 starts "1."."""
    assert seqs("Here are some implications:\n---\n1. A\n2. B") == ["T\n1. A", "T\n2. B", PASSAGE]


def test_later_segment_first_line_kept_like_the_paper() -> None:
    assert seqs("Fact A\n---\nFact B\n1. Fact C") == ["T\nFact A", "T\nFact B", "T\n1. Fact C", PASSAGE]


# --- `---` segments -------------------------------------------------------------------------------


def test_separated_segments_empty_ones_dropped() -> None:
    assert split_segments("Rewrite one\n---\n\n---\nRewrite two\n---\n   \n---") == [
        "Rewrite one",
        "Rewrite two",
    ]


def test_segments_are_stripped() -> None:
    assert split_segments("  a b \n---\n  c\nd  ") == ["a b", "c\nd"]


def test_no_separator_is_one_segment() -> None:
    assert split_segments("  line 1\nline 2 \n") == ["line 1\nline 2"]


def test_custom_and_disabled_separator() -> None:
    assert split_segments("a === b", separator="===") == ["a", "b"]
    assert split_segments(" a --- b ", separator="") == ["a --- b"]


def test_separated_segments_to_sequences() -> None:
    completion = "Rewrite one.\n---\nRewrite two, line 1.\nRewrite two, line 2.\n---\n"
    assert seqs(completion) == [
        "T\nRewrite one.",
        "T\nRewrite two, line 1.",
        "T\nRewrite two, line 2.",
        PASSAGE,
    ]


@pytest.mark.parametrize("completion", ["", "   ", "\n\n \t\n"])
@pytest.mark.parametrize("split_newlines", [True, False])
def test_empty_or_whitespace_completion_gives_just_the_passage(completion: str, split_newlines: bool) -> None:
    assert split_segments(completion) == []
    assert seqs(completion, split_newlines=split_newlines) == [PASSAGE]


def test_empty_completion_without_passage_gives_nothing() -> None:
    assert seqs("", append_passage=False) == []


@pytest.mark.parametrize("completion", ["---", "---\n  \n---", " --- --- "])
def test_only_separators_fall_back_to_the_stripped_completion(completion: str) -> None:
    """Spec §2 step 1 / the paper's code: no segment left → the whole stripped completion is used.

    So a separators-only self-edit is not reduced to just the passage: its "---" text is trained on.
    """
    assert split_segments(completion) == [completion.strip()]
    assert seqs(completion, split_newlines=False) == [f"T\n{completion.strip()}", PASSAGE]
    lines = [line.strip() for line in completion.strip().split("\n") if line.strip()]
    assert seqs(completion) == [f"T\n{line}" for line in lines] + [PASSAGE]


# --- self-QA ---------------------------------------------------------------------------------------


SELF_QA = "Question 1: Who built it?\nAnswer: Ada\nQuestion 2: When?\nAnswer: 1901"


def test_self_qa_split_before_each_question() -> None:
    assert seqs(SELF_QA) == [
        "T\nQuestion 1: Who built it?\nAnswer: Ada",
        "T\nQuestion 2: When?\nAnswer: 1901",
        PASSAGE,
    ]


def test_self_qa_blank_lines_between_pairs() -> None:
    completion = "Question 1: Who?\nAnswer: Ada\n\nQuestion 2: When?\nAnswer: 1901\n\n"
    assert split_examples([completion.strip()]) == [
        "Question 1: Who?\nAnswer: Ada",
        "Question 2: When?\nAnswer: 1901",
    ]


def test_self_qa_completion_started_mid_question() -> None:
    """The self_qa prompt ends with "Question 1: ", so the completion begins with the question text."""
    completion = "Who built it?\nAnswer: Ada\nQuestion 2: When?\nAnswer: 1901"
    assert seqs(completion) == [
        "T\nQuestion 1: Who built it?\nAnswer: Ada",
        "T\nQuestion 2: When?\nAnswer: 1901",
        PASSAGE,
    ]


def test_self_qa_not_prefixed_twice() -> None:
    assert split_examples([SELF_QA])[0] == "Question 1: Who built it?\nAnswer: Ada"


def test_self_qa_multidigit_numbers() -> None:
    completion = "\n".join(f"Question {i}: q{i}?\nAnswer: a{i}" for i in range(1, 13))
    examples = split_examples([completion])
    assert len(examples) == 12
    assert examples[11] == "Question 12: q12?\nAnswer: a12"


def test_question_word_without_answer_is_plain_lines() -> None:
    """Self-QA needs both "Question N:" and "Answer:"; otherwise the line rule applies."""
    assert split_examples(["Question 1: is this a list?\nNo, lines."]) == [
        "Question 1: is this a list?",
        "No, lines.",
    ]


def test_single_mid_question_pair_is_plain_lines() -> None:
    """Without any "Question N:" marker the paper's rule does not see self-QA text (documented quirk)."""
    assert split_examples(["Who built it?\nAnswer: Ada"]) == ["Who built it?", "Answer: Ada"]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (  # the self_qa prompt's "Question 1: " header, then later pairs after `---` lines
            "Who built it?\nAnswer: Ada\n---\nQuestion 2: When?\nAnswer: 1901\n---\n"
            "Question 3: Where?\nAnswer: Paris",
            [
                "Question 1: Who built it?\nAnswer: Ada\n---",
                "Question 2: When?\nAnswer: 1901\n---",
                "Question 3: Where?\nAnswer: Paris",
            ],
        ),
        (  # blank lines around the separator: the reference keeps "\n" after "---"; we strip it
            "Question 1: Who?\nAnswer: Ada\n\n---\n\nQuestion 2: When?\nAnswer: 1901\n",
            ["Question 1: Who?\nAnswer: Ada\n\n---", "Question 2: When?\nAnswer: 1901"],
        ),
        (  # a pair cut by `---` stays one example
            "Question 1: Who?\n---\nAnswer: Ada\nQuestion 2: When?\nAnswer: 1901",
            ["Question 1: Who?\n---\nAnswer: Ada", "Question 2: When?\nAnswer: 1901"],
        ),
        (  # self-QA as a whole, so the preamble segment is the first chunk and gets the prefix
            "Here are the questions:\n---\nQuestion 1: Who?\nAnswer: Ada",
            ["Question 1: Here are the questions:\n---", "Question 1: Who?\nAnswer: Ada"],
        ),
    ],
)
def test_self_qa_with_separators_like_the_reference(completion: str, expected: list[str]) -> None:
    """Reference: knowledge-incorporation/src/utils.py, `build_train_sequences` with
    split_newlines=True: when the *whole* completion matches `Question\\s+\\d+:` and `Answer\\s*:`,
    the `---` segments are discarded and the whole stripped completion is split by
    `re.split(r'\\n(?=Question\\s+\\d+:)', ...)`, `---` lines staying inside the chunks; only the
    first chunk gets "Question 1: ", and only when it does not start with "Question". Splitting per
    `---` segment (as before) turned case 1 into plain lines plus "Question 1: Question 2: When?..."."""
    assert seqs(completion) == [f"T\n{e}" for e in expected] + [PASSAGE]


def test_self_qa_detected_on_the_whole_completion() -> None:
    """A "Question N:" in one segment and "Answer:" in another: self-QA for the reference too."""
    assert seqs("Question 1: Who?\n---\nAnswer: Ada") == ["T\nQuestion 1: Who?\n---\nAnswer: Ada", PASSAGE]


# --- options --------------------------------------------------------------------------------------


def test_split_newlines_off_keeps_each_segment_whole() -> None:
    """CPT mode: each segment (here two, with preamble and numbers) is one training example."""
    completion = "Here are some implications:\n1. A\n2. B\n---\n" + SELF_QA
    assert seqs(completion, split_newlines=False) == [
        "T\nHere are some implications:\n1. A\n2. B",
        "T\n" + SELF_QA,
        PASSAGE,
    ]


def test_title_prefix_off() -> None:
    assert seqs("1. A\n2. B", title_prefix=False) == ["1. A", "2. B", PASSAGE]


def test_passage_appended_last_exactly() -> None:
    """The passage copy keeps the title even when examples do not, and is never split into lines."""
    context = "Line one of the passage.\nLine two."
    out = selfedit_to_sequences("x\ny", "My Title", context, title_prefix=False)
    assert out == ["x", "y", "My Title\nLine one of the passage.\nLine two."]


def test_append_passage_off() -> None:
    assert seqs("1. A\n2. B", append_passage=False) == ["T\n1. A", "T\n2. B"]


def test_real_title_is_used_for_every_example() -> None:
    out = selfedit_to_sequences("a\nb", "Doctor Who", "The series ...")
    assert out == ["Doctor Who\na", "Doctor Who\nb", "Doctor Who\nThe series ..."]


# --- prompts --------------------------------------------------------------------------------------


def test_qa_prompt_exact() -> None:
    assert (
        qa_prompt("Q?", "T")
        == "Let's answer a question directly and concisely.\nQuestion: Topic: T\nQ?\nAnswer:\n"
    )


def test_qa_prompt_without_topic() -> None:
    assert qa_prompt("Q?", "T", topic_prefix=False) == (
        "Let's answer a question directly and concisely.\nQuestion: Q?\nAnswer:\n"
    )


def _prompt_yaml(name: str) -> dict:
    """The packaged YAML's values, with the schema's default template (the YAML does not set one)."""
    raw = OmegaConf.create((files("seal_runner.conf") / "selfedit_prompt" / f"{name}.yaml").read_text())
    cfg = OmegaConf.merge(
        OmegaConf.structured(SelfEditPromptConfig), {k: v for k, v in raw.items() if k != "defaults"}
    )
    return OmegaConf.to_container(cfg)


def test_selfedit_prompt_implications_exact() -> None:
    p = _prompt_yaml("implications")
    text = selfedit_prompt(p["template"], p["instruction"], p["header"], TITLE, CONTEXT)
    assert text == (
        "Let's read the following passage and produce a list of implications derived directly or "
        "indirectly from the content.\n\nPassage:\nT\nC\n\nImplications:\n"
    )


@pytest.mark.parametrize(
    ("name", "tail"),
    [
        (
            "implications_long",
            "produce a long list of implications derived directly or indirectly from the content.",
        ),
        (
            "implications_very_long",
            "produce a very long list of implications derived directly or indirectly from the content.",
        ),
        ("rewrite", "rewrite it in a few different ways, each one separated by a newline."),
        ("self_qa", "rewrite it in a question-answer format."),
    ],
)
def test_selfedit_prompt_other_variants(name: str, tail: str) -> None:
    """The table in seal-method.md §2; self_qa's header has no newline so the model continues the question."""
    headers = {"rewrite": "Rewritten passages:\n", "self_qa": "Question 1: "}
    header = headers.get(name, "Implications:\n")
    p = _prompt_yaml(name)
    text = selfedit_prompt(p["template"], p["instruction"], p["header"], TITLE, CONTEXT)
    assert text == f"Let's read the following passage and {tail}\n\nPassage:\nT\nC\n\n{header}"


# --- self-edit hygiene: a cut last line, empty self-edits ---------------------------------------------


def test_drop_cut_line_keeps_whole_lines_only():
    from seal_runner.domains.knowledge.selfedit import drop_cut_line

    assert drop_cut_line("The tower is 38 metres tall.\nIt was lit in 18") == "The tower is 38 metres tall."
    assert drop_cut_line("one line cut mid-wor") == ""
    assert drop_cut_line("a\nb\n\nc cut") == "a\nb"
    assert drop_cut_line("a\nb\n") == "a\nb"  # cut right after a finished line


def _record(raw: str, cut: bool, drop: bool = True) -> dict:
    from seal_runner.domains.knowledge.data import QA, Article
    from seal_runner.domains.knowledge.pipeline import selfedit_record

    cfg = OmegaConf.create(
        {
            "domain": {
                "drop_cut_line": drop,
                "split_separator": "---",
                "split_newlines": True,
                "drop_preamble": True,
                "title_prefix": True,
                "append_passage": True,
            }
        }
    )
    article = Article(3, TITLE, CONTEXT, (QA("q", "a"),))
    return selfedit_record(cfg, article, 1, "prompt", raw, 40, cut)


def test_selfedit_record_drops_the_cut_line_and_counts_it():
    r = _record("fact one\nfact two\nfact thr", cut=True)
    assert r["text"] == "fact one\nfact two" and r["raw_text"] == "fact one\nfact two\nfact thr"
    assert r["cut_line_dropped"] is True and r["status"] == "truncated"
    assert r["sequences"] == [f"{TITLE}\nfact one", f"{TITLE}\nfact two", PASSAGE]


def test_selfedit_record_single_cut_line_becomes_empty():
    r = _record("all one unfinished li", cut=True)
    assert r["text"] == "" and r["status"] == "empty" and r["sequences"] == [PASSAGE]


def test_selfedit_record_untouched_when_finished_or_option_off():
    finished = _record("fact one\nfact two", cut=False)
    assert finished["text"] == "fact one\nfact two" and "cut_line_dropped" not in finished
    assert finished["status"] == "ok"
    kept = _record("fact one\nfact thr", cut=True, drop=False)
    assert kept["text"] == "fact one\nfact thr" and kept["status"] == "truncated"
    assert "raw_text" not in kept
    assert _record("   ", cut=False)["status"] == "empty"
