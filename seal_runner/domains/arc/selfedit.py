"""ARC self-edits (paper §3): the prompt asking for a JSON training config, its parser, and the guards.

A self-edit chooses augmentation groups and training hyperparameters. Parsing and guarding are separate
on purpose: `parse_selfedit` rejects text that is not a usable JSON object (wrong types, out-of-range
numbers), which is what makes the sampler draw again; `ttt_plan` applies the paper's fallbacks to a parsed
edit with missing or unknown fields (train for 0 epochs: the untrained adapter is still evaluated).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from seal_runner.choices import SelfEditWording
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.grids import format_rows

SYSTEM_PROMPT = "You are a helpful assistant that provide the correct output for the given task immediately."

STRATEGIES: tuple[str, ...] = ("train_using_all_tokens", "train_using_output_tokens")
AUGMENTATION_KEYS: dict[str, str] = {
    "use_basic_augmentations": "basic",
    "use_size_augmentations": "size",
    "use_chain_augmentations": "chain",
    "use_repeat_augmentations": "repeat",
}
MAX_EPOCHS = 100
STEP_CAP = 375
BATCH_SIZE = 2

INSTRUCTION = """You are configuring a model training pipeline by selecting from predefined tools.

You must make two decisions:

1. Data generation tools. For each one, choose true or false:
   - use_basic_augmentations: rotations, flips, reflections, translations and transposition of the grids
   - use_size_augmentations: scaling the grids up in resolution, height or width
   - use_chain_augmentations: a rotation, flip or transposition followed by a resolution increase
   - use_repeat_augmentations: tiling the grids vertically, horizontally or both

2. Training configuration:
   - strategy: either "train_using_all_tokens" or "train_using_output_tokens"
   - learning_rate: a float
   - num_train_epochs: an integer

Respond with a single valid JSON object and nothing else, in exactly this format, using lowercase true/false:

{
  "data_generation": {
    "use_basic_augmentations": true,
    "use_size_augmentations": false,
    "use_chain_augmentations": false,
    "use_repeat_augmentations": false
  },
  "training": {
    "strategy": "train_using_output_tokens",
    "learning_rate": 0.0001,
    "num_train_epochs": 3
  }
}
"""


# The reference repository's request (few-shot/utils/prompts.py, `self_edit_prompt`), verbatim: a leading
# newline, placeholder "..." values in the example and an output-format section.
REFERENCE_INSTRUCTION = """
You are configuring a model training pipeline by selecting from predefined tools.

You must make two decisions:

1. **Data Generation Tools** — For each of the following, choose true or false:
    - use_basic_augmentations
    - use_size_augmentations
    - use_chain_augmentations
    - use_repeat_augmentations

2. **Training Configuration** — Choose one of:
    - "train_using_all_tokens"
    - "train_using_output_tokens"

Also specify:
    - learning_rate (float)
    - num_train_epochs (integer)

### Output Format

Respond with a valid JSON object. Do not include any explanation, markdown, or extra text. Use lowercase `true`/`false` for booleans and ensure correct JSON syntax.

Example output:

{
  "data_generation": {
    "use_basic_augmentations": ...,
    "use_size_augmentations": ...,
    "use_chain_augmentations": ...,
    "use_repeat_augmentations": ...
  },
  "training": {
    "strategy": ...,
    "learning_rate": ...,
    "num_train_epochs": ...
  }
}
"""


# The reference's self-edit prompt markup (few-shot/self-edit.py, `get_prompt`): Llama 3's header written by
# hand. Llama 3.x's chat template differs from it: it adds "Cutting Knowledge Date" / "Today Date" lines to
# the system turn and trims each turn's text (the reference request's final newline is kept here).
REFERENCE_LLAMA3_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
LLAMA3_MARKUP_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def format_demos(demos: Sequence[ARCExample], wording: SelfEditWording = SelfEditWording.ours) -> str:
    """Per demo "Input:\\n{rows}\\nOutput:\\n{rows}\\n", then the "------\\n\\n" separator.

    The reference's layout (`wording=reference`) ends each grid with a blank line:
    "Input:\\n{rows}\\n\\nOutput:\\n{rows}\\n\\n".
    """
    gap = "\n" if wording == SelfEditWording.reference else ""
    blocks = [
        f"Input:\n{format_rows(ex.input)}\n{gap}Output:\n{format_rows(ex.output)}\n{gap}" for ex in demos
    ]
    return "".join(blocks) + "------\n\n"


def default_instruction(wording: SelfEditWording) -> str:
    """The request text `selfedit_prompt.instruction: null` stands for."""
    return REFERENCE_INSTRUCTION if wording == SelfEditWording.reference else INSTRUCTION


def selfedit_user_message(
    demos: Sequence[ARCExample],
    instruction: str | None = None,
    wording: SelfEditWording = SelfEditWording.ours,
) -> str:
    """The user turn of the self-edit prompt (chat templating and `SYSTEM_PROMPT` are the caller's);
    `instruction` None = the wording's own request text."""
    return format_demos(demos, wording) + (instruction or default_instruction(wording))


@dataclass(frozen=True)
class ParsedSelfEdit:
    """A type-checked self-edit. A field is None when the model left it out; `strategy` may be unknown."""

    use_basic_augmentations: bool | None
    use_size_augmentations: bool | None
    use_chain_augmentations: bool | None
    use_repeat_augmentations: bool | None
    strategy: str | None
    learning_rate: float | None
    num_train_epochs: int | None


@dataclass(frozen=True)
class ParseError:
    """Why a completion is not a usable self-edit (logged, and the prompt is sampled again)."""

    reason: str


def parse_selfedit(text: str, *, strict: bool = False) -> ParsedSelfEdit | ParseError:
    """Parse the first JSON object in `text` (prose and ```json fences around it are ignored).

    `strict`: the whole text must be one JSON object, as the reference's `json.loads(text)` demands
    (anything else is re-sampled there), so a fenced or commented edit is a parse error.
    """
    config = _whole_json_object(text) if strict else _first_json_object(text)
    if isinstance(config, ParseError):
        return config
    sections = {}
    for section in ("data_generation", "training"):
        value = config.get(section, {})
        if not isinstance(value, dict):
            return ParseError(f"'{section}' must be an object, got {type(value).__name__}")
        sections[section] = value
    augmentation = sections["data_generation"]
    for key in AUGMENTATION_KEYS:
        if key in augmentation and not isinstance(augmentation[key], bool):
            return ParseError(f"data_generation.{key} must be true or false, got {augmentation[key]!r}")
    training = sections["training"]
    error = _check_training(training)
    if error is not None:
        return error
    learning_rate = training.get("learning_rate")
    return ParsedSelfEdit(
        *(augmentation.get(key) for key in AUGMENTATION_KEYS),
        strategy=training.get("strategy"),
        learning_rate=None if learning_rate is None else float(learning_rate),
        num_train_epochs=training.get("num_train_epochs"),
    )


def _whole_json_object(text: str) -> dict | ParseError:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return ParseError(f"not one JSON document (domain.strict_json): {err}")
    if not isinstance(value, dict):
        return ParseError(f"the JSON document is a {type(value).__name__}, not an object")
    return value


def _first_json_object(text: str) -> dict | ParseError:
    """The first top-level {...} that decodes to an object.

    Objects nested in a broken outer one are never taken: the "training" block of an otherwise invalid
    edit would otherwise pass as a complete (empty) self-edit.
    """
    decoder = json.JSONDecoder()
    first_error = None
    for start in _top_level_braces(text):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError as err:
            first_error = first_error or err
            continue
        if isinstance(value, dict):
            return value
    if first_error is None:
        return ParseError("no JSON object in the text")
    return ParseError(f"no complete JSON object (truncated or invalid): {first_error}")


def _top_level_braces(text: str) -> Iterator[int]:
    """Positions of "{" at brace depth 0, skipping braces inside JSON strings (quotes in prose are ignored)."""
    depth, in_string, escaped = 0, False, False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"' and depth > 0:
            in_string = True
        elif char == "{":
            if depth == 0:
                yield i
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1


def _check_training(training: dict) -> ParseError | None:
    strategy = training.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        return ParseError(f"training.strategy must be a string, got {strategy!r}")
    rate = training.get("learning_rate")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            return ParseError(f"training.learning_rate must be a number, got {rate!r}")
        if not 0 < rate <= 1:
            return ParseError(f"training.learning_rate must be in (0, 1], got {rate!r}")
    epochs = training.get("num_train_epochs")
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            return ParseError(f"training.num_train_epochs must be an integer, got {epochs!r}")
        if not 0 <= epochs <= MAX_EPOCHS:
            return ParseError(f"training.num_train_epochs must be in 0..{MAX_EPOCHS}, got {epochs}")
    return None


@dataclass(frozen=True)
class TTTPlan:
    """What the inner loop runs. `strategy`/`learning_rate` may be None only when `num_train_epochs` is 0;
    `note` says why training was switched off ("" when it was not)."""

    augmentation_groups: tuple[str, ...]
    strategy: str | None
    learning_rate: float | None
    num_train_epochs: int
    note: str


def selected_groups(edit: ParsedSelfEdit) -> tuple[str, ...]:
    """Augmentation groups switched on; none at all if any of the four keys is missing (paper guard)."""
    flags = [getattr(edit, key) for key in AUGMENTATION_KEYS]
    if any(flag is None for flag in flags):
        return ()
    return tuple(group for group, flag in zip(AUGMENTATION_KEYS.values(), flags, strict=True) if flag)


def ttt_plan(
    edit: ParsedSelfEdit, n_examples: int, *, batch_size: int = BATCH_SIZE, step_cap: int = STEP_CAP
) -> TTTPlan:
    """Apply the paper's guards; `n_examples` is the size of the data built from `selected_groups(edit)`.

    0 epochs if: an augmentation key is missing; a training field is missing or the strategy unknown;
    or epochs x n_examples / batch_size exceeds `step_cap` (so one self-edit cannot cost unbounded compute).
    """
    groups = selected_groups(edit)
    note = ""
    if any(getattr(edit, key) is None for key in AUGMENTATION_KEYS):
        note = "missing data_generation key(s)"
    elif edit.strategy is None or edit.learning_rate is None or edit.num_train_epochs is None:
        note = "missing training field(s)"
    elif edit.strategy not in STRATEGIES:
        note = f"unknown strategy {edit.strategy!r}"
    elif edit.num_train_epochs * n_examples / batch_size > step_cap:
        note = f"{edit.num_train_epochs} epochs x {n_examples} examples / {batch_size} > {step_cap} steps"
    epochs = 0 if note else edit.num_train_epochs
    return TTTPlan(groups, edit.strategy, edit.learning_rate, epochs, note)
