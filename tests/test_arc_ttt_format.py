"""ARC TTT prompts and loss masks: the assistant span is found from the chat template, whatever it is."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers.processors import TemplateProcessing

from seal_runner.choices import SelfEditHeader, SelfEditWording, TokenLayout
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.leave_n import TTTExample
from seal_runner.domains.arc.selfedit import LLAMA3_MARKUP_TOKENS, SYSTEM_PROMPT, selfedit_user_message
from seal_runner.domains.arc.ttt_format import (
    ANSWER_END,
    ChatRenderer,
    TTTEncoder,
    grid_format,
    parse_answer,
    ttt_messages,
)
from seal_runner.errors import InputError
from seal_runner.lora.batching import IGNORE_INDEX
from seal_runner.models import load_tokenizer

# Excerpts of the reference repository (its source paths and commit inside the file).
REFERENCE = json.loads((Path(__file__).parent / "data" / "arc_reference_markup.json").read_text())

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


@pytest.fixture(scope="module")
def llama_like(llama_style):
    """The Llama-style template over a tokenizer that, like Llama 3's, knows the header tokens as single
    tokens and puts its BOS "<|begin_of_text|>" before any text it encodes with special tokens."""
    tokenizer = copy.deepcopy(llama_style)
    tokenizer.add_special_tokens({"additional_special_tokens": list(LLAMA3_MARKUP_TOKENS)})
    tokenizer.bos_token = "<|begin_of_text|>"
    bos = tokenizer.bos_token
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    assert tokenizer("", add_special_tokens=True)["input_ids"] == [tokenizer.bos_token_id]
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


def test_reference_header_is_the_reference_string(llama_like, smol):
    """selfedit_prompt.header=reference: the reference's hand-written Llama 3 markup, character for
    character; the template's rendering has the date line and trims the request's final newline."""
    demos = list(DEMOS)
    chat = ChatRenderer(llama_like, {"date_string": "26 Jul 2024"})
    assert REFERENCE["system_message"]["text"] == SYSTEM_PROMPT
    user = selfedit_user_message(demos, wording=SelfEditWording.reference)
    by_hand = chat.selfedit_prompt(demos, wording=SelfEditWording.reference, header=SelfEditHeader.reference)
    template = REFERENCE["selfedit_prompt_markup"]["template"]
    assert by_hand == template.format(system_message=SYSTEM_PROMPT, user_message=user)
    assert "Today Date" not in by_hand and by_hand.endswith(
        "}\n<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    templated = chat.selfedit_prompt(demos, wording=SelfEditWording.reference)
    assert "Today Date: 26 Jul 2024" in templated
    with pytest.raises(InputError, match="selfedit_prompt.header=reference"):  # SmolLM2 has no Llama 3 tokens
        ChatRenderer(smol).selfedit_prompt(demos, header=SelfEditHeader.reference)


@pytest.mark.parametrize("which", ["smol", "llama_style"])
def test_reference_layout_labels_the_trailing_generation_prompt(request, which):
    """domain.token_layout=reference: the row is rendered with the generation prompt after the answer,
    and the output-token loss labels it; the masked prompt is the same as ours."""
    tokenizer = request.getfixturevalue(which)
    fmt = grid_format("numpy")
    ours = TTTEncoder(tokenizer, fmt, {"date_string": "26 Jul 2024"})
    reference = TTTEncoder(tokenizer, fmt, {"date_string": "26 Jul 2024"}, TokenLayout.reference)
    row = reference.encode(EXAMPLE, "train_using_output_tokens")
    ours_row = ours.encode(EXAMPLE, "train_using_output_tokens")
    generation_prompt = {
        "smol": "<|im_end|>\n<|im_start|>assistant\n",
        "llama_style": "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    }[which]
    assert labelled_text(tokenizer, row) == fmt.write(EXAMPLE.test.output) + ANSWER_END + generation_prompt
    first = next(i for i, label in enumerate(row.labels) if label != IGNORE_INDEX)
    assert row.input_ids[:first] == ours_row.input_ids[:first]
    assert ours_row.labels[:first] == row.labels[:first]
    assert reference.length(EXAMPLE) == len(row.input_ids) > ours.length(EXAMPLE)
    everything = reference.encode(EXAMPLE, "train_using_all_tokens")
    assert everything.input_ids == row.input_ids and everything.labels == row.input_ids


def test_reference_layout_drops_one_bos_from_queries_only(llama_like, smol):
    """The reference cuts "<|begin_of_text|>" from each query's text, so the engine's tokenizer adds the
    only BOS, while its TTT rows (text with the BOS, tokenised with special tokens) start with two."""
    assert REFERENCE["query_bos_strip"]["line"].startswith('find_start = prompt.find("<|begin_of_text|>")')
    bos = llama_like.bos_token_id
    fmt = grid_format("numpy")
    ours = TTTEncoder(llama_like, fmt, {"date_string": "26 Jul 2024"})
    reference = TTTEncoder(llama_like, fmt, {"date_string": "26 Jul 2024"}, TokenLayout.reference)
    ours_query = ours.query_prompt(EXAMPLE.demos, EXAMPLE.test.input)
    reference_query = reference.query_prompt(EXAMPLE.demos, EXAMPLE.test.input)
    assert ours_query == "<|begin_of_text|>" + reference_query
    engine_ids = llama_like(reference_query, add_special_tokens=True)[
        "input_ids"
    ]  # what an engine decodes from
    assert engine_ids[0] == bos != engine_ids[1]
    for encoder in (ours, reference):
        assert encoder.encode(EXAMPLE, "train_using_output_tokens").input_ids[:3] == [bos, bos, engine_ids[1]]
    # ours: the query is the row's prompt, both BOS included
    row = ours.encode(EXAMPLE, "train_using_output_tokens")
    assert llama_like(ours_query, add_special_tokens=True)["input_ids"] == [
        t for t, label in zip(row.input_ids, row.labels, strict=True) if label == IGNORE_INDEX
    ]
    # SmolLM2's template starts with its bos_token "<|im_start|>", but its tokenizer adds none: kept
    smol_reference = TTTEncoder(smol, fmt, layout=TokenLayout.reference)
    smol_ours = TTTEncoder(smol, fmt)
    assert smol_reference.query_prompt(EXAMPLE.demos, EXAMPLE.test.input) == smol_ours.query_prompt(
        EXAMPLE.demos, EXAMPLE.test.input
    )
