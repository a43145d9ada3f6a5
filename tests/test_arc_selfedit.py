"""ARC self-edits: prompt text, JSON parsing (valid, fenced, truncated, wrong types) and the guards."""

from __future__ import annotations

import json

import pytest

from seal_runner.choices import SelfEditWording
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.selfedit import (
    INSTRUCTION,
    REFERENCE_INSTRUCTION,
    ParsedSelfEdit,
    ParseError,
    format_demos,
    parse_selfedit,
    selected_groups,
    selfedit_user_message,
    ttt_plan,
)

VALID = {
    "data_generation": {
        "use_basic_augmentations": True,
        "use_size_augmentations": False,
        "use_chain_augmentations": True,
        "use_repeat_augmentations": False,
    },
    "training": {"strategy": "train_using_output_tokens", "learning_rate": 1e-4, "num_train_epochs": 3},
}


def edited(section: str, key: str, value: object) -> str:
    config = json.loads(json.dumps(VALID))
    if value is _DELETE:
        del config[section][key]
    else:
        config[section][key] = value
    return json.dumps(config)


_DELETE = object()


def parsed(text: str) -> ParsedSelfEdit:
    result = parse_selfedit(text)
    assert isinstance(result, ParsedSelfEdit), result
    return result


def test_valid_json() -> None:
    edit = parsed(json.dumps(VALID))
    assert edit == ParsedSelfEdit(True, False, True, False, "train_using_output_tokens", 1e-4, 3)
    assert selected_groups(edit) == ("basic", "chain")


def test_fenced_json_with_prose_and_integer_rate() -> None:
    text = (
        "Sure! Here is my config:\n```json\n" + edited("training", "learning_rate", 1) + "\n```\nGood luck."
    )
    assert parsed(text).learning_rate == 1.0


def test_first_parseable_object_wins() -> None:
    text = "{not json} then " + json.dumps(VALID) + " and " + edited("training", "num_train_epochs", 9)
    assert parsed(text).num_train_epochs == 3


@pytest.mark.parametrize(
    "text",
    [
        "```json\n" + json.dumps(VALID) + "\n```",
        "Here is my config: " + json.dumps(VALID),
        json.dumps(VALID) + " Good luck.",
        json.dumps(VALID) + json.dumps(VALID),
    ],
)
def test_strict_json_takes_only_a_whole_json_document(text: str) -> None:
    assert parsed(text) == parsed(json.dumps(VALID))  # lenient: the first object is found
    result = parse_selfedit(text, strict=True)
    assert isinstance(result, ParseError) and "strict_json" in result.reason


def test_strict_json_accepts_what_json_loads_accepts() -> None:
    edit = parse_selfedit("\n  " + json.dumps(VALID, indent=2) + "\n", strict=True)
    assert edit == parsed(json.dumps(VALID))
    for text in ("[1, 2]", "3"):
        result = parse_selfedit(text, strict=True)
        assert isinstance(result, ParseError) and "not an object" in result.reason
    wrong_type = parse_selfedit(edited("training", "num_train_epochs", 3.0), strict=True)
    assert isinstance(wrong_type, ParseError) and "must be an integer" in wrong_type.reason


def test_braces_in_strings_and_prose() -> None:
    text = 'My "plan {draft}": ' + edited("training", "strategy", 'a}"{b')
    assert parsed(text).strategy == 'a}"{b'


def test_nested_object_of_a_broken_edit_is_not_taken() -> None:
    broken = json.dumps(VALID).replace("true", "True")
    assert isinstance(parse_selfedit(broken + " trailing"), ParseError)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no braces at all", "no JSON object"),
        (json.dumps(VALID)[:60], "truncated or invalid"),
        (json.dumps(VALID).replace("true", "True"), "truncated or invalid"),
        ("[1, 2]", "no JSON object"),
        (json.dumps({"data_generation": [], "training": {}}), "'data_generation' must be an object"),
        (edited("data_generation", "use_basic_augmentations", "yes"), "must be true or false"),
        (edited("data_generation", "use_size_augmentations", 1), "must be true or false"),
        (edited("training", "strategy", 3), "strategy must be a string"),
        (edited("training", "learning_rate", "0.001"), "learning_rate must be a number"),
        (edited("training", "learning_rate", True), "learning_rate must be a number"),
        (edited("training", "learning_rate", 0), "learning_rate must be in (0, 1]"),
        (edited("training", "learning_rate", 1.5), "learning_rate must be in (0, 1]"),
        (edited("training", "num_train_epochs", 3.0), "num_train_epochs must be an integer"),
        (edited("training", "num_train_epochs", False), "num_train_epochs must be an integer"),
        (edited("training", "num_train_epochs", -1), "num_train_epochs must be in 0..100"),
        (edited("training", "num_train_epochs", 101), "num_train_epochs must be in 0..100"),
    ],
)
def test_invalid_self_edits_say_why(text: str, reason: str) -> None:
    result = parse_selfedit(text)
    assert isinstance(result, ParseError) and reason in result.reason, result


def test_valid_plan_keeps_the_edit() -> None:
    plan = ttt_plan(parsed(json.dumps(VALID)), n_examples=100)
    assert plan.augmentation_groups == ("basic", "chain") and plan.num_train_epochs == 3 and plan.note == ""
    assert plan.strategy == "train_using_output_tokens" and plan.learning_rate == 1e-4


def test_missing_augmentation_key_means_no_augmentation_and_no_training() -> None:
    edit = parsed(edited("data_generation", "use_repeat_augmentations", _DELETE))
    assert edit.use_repeat_augmentations is None and selected_groups(edit) == ()
    plan = ttt_plan(edit, n_examples=10)
    assert plan.augmentation_groups == () and plan.num_train_epochs == 0 and "data_generation" in plan.note


@pytest.mark.parametrize("key", ["strategy", "learning_rate", "num_train_epochs"])
def test_missing_training_field_means_no_training(key: str) -> None:
    plan = ttt_plan(parsed(edited("training", key, _DELETE)), n_examples=10)
    assert plan.num_train_epochs == 0 and plan.augmentation_groups == ("basic", "chain")
    assert "missing training" in plan.note


def test_unknown_strategy_means_no_training() -> None:
    plan = ttt_plan(parsed(edited("training", "strategy", "train_harder")), n_examples=10)
    assert plan.num_train_epochs == 0 and "unknown strategy" in plan.note


def test_empty_object_parses_but_trains_nothing() -> None:
    plan = ttt_plan(parsed("{}"), n_examples=10)
    assert plan.augmentation_groups == () and plan.num_train_epochs == 0


def test_step_cap() -> None:
    edit = parsed(edited("training", "num_train_epochs", 3))
    assert ttt_plan(edit, n_examples=250).num_train_epochs == 3  # 3 x 250 / 2 = 375: at the cap, allowed
    over = ttt_plan(edit, n_examples=251)  # 376.5 steps
    assert over.num_train_epochs == 0 and "> 375 steps" in over.note
    assert ttt_plan(edit, n_examples=251, step_cap=400).num_train_epochs == 3
    assert ttt_plan(edit, n_examples=251, batch_size=4).num_train_epochs == 3


def test_demo_block_format() -> None:
    demos = [ARCExample([[0, 1], [2, 3]], [[4]]), ARCExample([[5]], [[6, 7]])]
    assert format_demos(demos) == "Input:\n0 1\n2 3\nOutput:\n4\nInput:\n5\nOutput:\n6 7\n------\n\n"


def test_user_message_is_demos_then_instruction() -> None:
    demos = [ARCExample([[0, 1]], [[1, 0]])]
    message = selfedit_user_message(demos)
    assert message == format_demos(demos) + INSTRUCTION
    assert INSTRUCTION.startswith(
        "You are configuring a model training pipeline by selecting from predefined tools."
    )
    for word in ["use_basic_augmentations", "use_size_augmentations", "use_chain_augmentations"]:
        assert word in INSTRUCTION
    for word in ["use_repeat_augmentations", "train_using_all_tokens", "train_using_output_tokens"]:
        assert word in INSTRUCTION
    assert "lowercase true/false" in INSTRUCTION and "JSON" in INSTRUCTION


def test_instruction_example_is_itself_a_valid_self_edit() -> None:
    plan = ttt_plan(parsed(INSTRUCTION), n_examples=10)
    assert plan.num_train_epochs > 0 and plan.note == ""


# few-shot/utils/prompts.py of github.com/Continual-Intelligence/SEAL (`self_edit_prompt`), checked verbatim
REFERENCE_HEAD = (
    "\nYou are configuring a model training pipeline by selecting from predefined tools.\n\n"
    "You must make two decisions:\n\n"
    "1. **Data Generation Tools** \u2014 For each of the following, choose true or false:\n"
    "    - use_basic_augmentations\n"
)
REFERENCE_TAIL = (
    "### Output Format\n\n"
    "Respond with a valid JSON object. Do not include any explanation, markdown, or extra text. "
    "Use lowercase `true`/`false` for booleans and ensure correct JSON syntax.\n\n"
    'Example output:\n\n{\n  "data_generation": {\n    "use_basic_augmentations": ...,\n'
)


def test_reference_wording_is_the_reference_text_and_layout() -> None:
    assert REFERENCE_INSTRUCTION.startswith(REFERENCE_HEAD) and REFERENCE_TAIL in REFERENCE_INSTRUCTION
    assert REFERENCE_INSTRUCTION.endswith('    "num_train_epochs": ...\n  }\n}\n')
    demos = [ARCExample([[0, 1], [2, 3]], [[4]]), ARCExample([[5]], [[6, 7]])]
    message = selfedit_user_message(demos, wording=SelfEditWording.reference)
    # the reference's get_prompt: a blank line after each grid, then "------\n\n" and the text
    assert message == (
        "Input:\n0 1\n2 3\n\nOutput:\n4\n\nInput:\n5\n\nOutput:\n6 7\n\n------\n\n" + REFERENCE_INSTRUCTION
    )
    # the reference's example has "..." values: it is not a self-edit, so a copy of it is re-sampled
    assert isinstance(parse_selfedit(REFERENCE_INSTRUCTION), ParseError)


def test_an_instruction_string_overrides_either_wording() -> None:
    demos = [ARCExample([[0]], [[1]])]
    for wording in SelfEditWording:
        message = selfedit_user_message(demos, "Do X.", wording)
        assert message == format_demos(demos, wording) + "Do X."
