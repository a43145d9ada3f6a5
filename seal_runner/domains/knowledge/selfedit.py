"""Self-edit text → training sequences, step by step as the paper's reference code does
(knowledge-incorporation/src/utils.py, `build_train_sequences`).

1. split on `---`, strip, drop empty segments (none left → the whole stripped completion);
2. with split_newlines: a completion that is self-QA as a whole (has "Question N:" and "Answer:")
   is split before each "\nQuestion N:" over its whole text, `---` lines included (the reference
   ignores the step-1 segments here), and its first chunk gets "Question 1: " unless it starts with
   "Question"; otherwise one example per non-empty line, dropping line 1 when line 2 starts a "1."
   list (a preamble). Unlike the reference, self-QA chunks are stripped (it keeps the newline before
   the next question);
3. each example becomes "{title}\n{example}"; "{title}\n{context}" is appended last.
"""

from __future__ import annotations

import re

# The reference's patterns, verbatim.
_QUESTION_SPLIT = re.compile(r"\n(?=Question\s+\d+:)")
_QUESTION = re.compile(r"Question\s+\d+:")
_ANSWER = re.compile(r"Answer\s*:")


def is_self_qa(text: str) -> bool:
    return bool(_QUESTION.search(text) and _ANSWER.search(text))


def drop_cut_line(text: str) -> str:
    """A self-edit cut at `max_tokens` minus its last, unfinished line (nothing when it is one line):
    with one training example per line, the cut fragment would become a training sequence, and as an
    SFT target it would teach the policy to stop mid-sentence."""
    if text.endswith("\n"):  # the cut fell right after a finished line
        return text.strip()
    head, newline, _ = text.rpartition("\n")
    return head.strip() if newline else ""


def split_segments(completion: str, separator: str = "---") -> list[str]:
    text = completion.strip()
    segments = [s.strip() for s in text.split(separator)] if separator else [text]
    segments = [s for s in segments if s]
    return segments or ([text] if text else [])


def split_examples(segments: list[str], drop_preamble: bool = True) -> list[str]:
    """Self-QA segments split per question; otherwise every non-empty line of every segment, with the
    preamble rule applied once to the joined lines (as the reference's build_train_sequences).

    A self-QA completion reaches here as one segment (selfedit_to_sequences does not split it on
    `---`), so a later question is never taken for the first one."""
    examples, lines = [], []
    for segment in segments:
        if is_self_qa(segment):
            chunks = [c.strip() for c in _QUESTION_SPLIT.split(segment.strip())]
            if not chunks[0].startswith("Question"):
                chunks[0] = "Question 1: " + chunks[0]
            examples += chunks
        else:
            lines += [line.strip() for line in segment.split("\n") if line.strip()]
    if drop_preamble and len(lines) > 1 and lines[1].startswith("1."):
        lines = lines[1:]
    return examples + lines


def selfedit_to_sequences(
    completion: str,
    title: str,
    context: str,
    *,
    separator: str = "---",
    split_newlines: bool = True,
    drop_preamble: bool = True,
    title_prefix: bool = True,
    append_passage: bool = True,
) -> list[str]:
    """Training sequences for one self-edit; empty when the self-edit yields nothing and no passage."""
    if split_newlines and is_self_qa(completion):
        segments = [completion.strip()]  # the reference's self-QA rule reads the whole completion
    else:
        segments = split_segments(completion, separator)
    examples = split_examples(segments, drop_preamble) if split_newlines else segments
    sequences = [f"{title}\n{e}" if title_prefix else e for e in examples]
    if append_passage:
        sequences.append(f"{title}\n{context}")
    return sequences
