"""ARC TTT prompts and loss masks: the assistant span is found from the chat template, whatever it is."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.leave_n import TTTExample
from seal_runner.domains.arc.ttt_format import (
    ANSWER_END,
    TTTEncoder,
    grid_format,
    parse_answer,
    ttt_messages,
)
from seal_runner.lora.batching import IGNORE_INDEX
from seal_runner.models import load_tokenizer

# A Llama-3-style template (date line, headers, end-of-turn), written here so the test needs no hub access.
LLAMA3_STYLE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% if m['role'] == 'system' %}Today Date: {{ date_string }}\n\n{% endif %}"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

DEMOS = (
    ARCExample(np.array([[1, 2], [3, 4]]), np.array([[2, 1], [4, 3]])),
    ARCExample(np.array([[5, 0, 6]]), np.array([[6, 0, 5]])),
)
EXAMPLE = TTTExample(DEMOS, ARCExample(np.array([[7, 8, 9], [0, 0, 1]]), np.array([[9, 8, 7], [1, 0, 0]])))


@pytest.fixture(scope="module")
def smol(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))  # the SmolLM2 tokenizer and chat template


@pytest.fixture(scope="module")
def llama_style(smol):
    tokenizer = copy.deepcopy(smol)
    tokenizer.chat_template = LLAMA3_STYLE
    return tokenizer


def labelled_text(tokenizer, row) -> str:
    return tokenizer.decode(
        [t for t, label in zip(row.input_ids, row.labels, strict=True) if label != IGNORE_INDEX]
    )


@pytest.mark.parametrize("fmt_name", ["numpy", "compact"])
@pytest.mark.parametrize("which", ["smol", "llama_style"])
def test_output_tokens_only_label_the_answer(request, which, fmt_name):
    tokenizer = request.getfixturevalue(which)
    fmt = grid_format(fmt_name)
    encoder = TTTEncoder(tokenizer, fmt, {"date_string": "26 Jul 2024"})
    row = encoder.encode(EXAMPLE, "train_using_output_tokens")
    answer = fmt.write(EXAMPLE.test.output) + ANSWER_END
    labelled = labelled_text(tokenizer, row)
    assert labelled.startswith(answer)
    tail = labelled[len(answer) :]
    assert tail.strip() in {"<|im_end|>", "<|eot_id|>"}  # only the template's end of turn follows
    # The labels are a suffix: everything before the answer (system, demos, query) is masked.
    first = next(i for i, label in enumerate(row.labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in row.labels[:first])
    assert row.labels[first:] == row.input_ids[first:]
    # The unlabelled prefix is exactly the prompt the engines are given at evaluation time.
    prompt = encoder.query_prompt(EXAMPLE.demos, EXAMPLE.test.input)
    assert row.input_ids[:first] == tokenizer(prompt, add_special_tokens=True)["input_ids"]
    everything = encoder.encode(EXAMPLE, "train_using_all_tokens")
    assert everything.input_ids == row.input_ids and everything.labels == everything.input_ids
    assert encoder.length(EXAMPLE) == len(row.input_ids)


def test_template_variables_and_paper_wording(llama_style):
    encoder = TTTEncoder(llama_style, grid_format("numpy"), {"date_string": "26 Jul 2024"})
    prompt = encoder.query_prompt(EXAMPLE.demos, EXAMPLE.test.input)
    assert "Today Date: 26 Jul 2024" in prompt
    messages = ttt_messages(EXAMPLE.demos, EXAMPLE.test.input, grid_format("numpy"), EXAMPLE.test.output)
    assert messages[0]["content"].endswith(
        "python arrays:\n[[1 2]\n [3 4]] -> [[2 1]\n [4 3]]#\n[[5 0 6]] -> [[6 0 5]]#\n"
    )
    assert messages[1]["content"] == "[[7 8 9]\n [0 0 1]] -> "
    assert messages[2]["content"] == "[[9 8 7]\n [1 0 0]]#"


def test_unknown_strategy_and_format_and_templates_that_hide_the_answer(smol):
    encoder = TTTEncoder(smol, grid_format("numpy"))
    with pytest.raises(ValueError, match="unknown TTT strategy"):
        encoder.encode(EXAMPLE, "train_on_vibes")
    with pytest.raises(ValueError, match="grid_format"):
        grid_format("json")
    odd = copy.deepcopy(smol)  # a template that drops earlier turns once an answer exists
    odd.chat_template = "{% for m in messages[-1:] %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="assistant span cannot be located"):
        TTTEncoder(odd, grid_format("numpy")).encode(EXAMPLE, "train_using_output_tokens")


def test_parse_answer_stops_at_the_end_marker():
    fmt = grid_format("numpy")
    assert parse_answer("[[1 2]\n [3 4]]#<junk after>", fmt).tolist() == [[1, 2], [3, 4]]
    assert parse_answer("[[1 2]\n [3 4]]", fmt).tolist() == [[1, 2], [3, 4]]
    assert parse_answer("[[1 2]\n [3]]#", fmt) is None
    assert parse_answer("01\n23#", grid_format("compact")).tolist() == [[0, 1], [2, 3]]
