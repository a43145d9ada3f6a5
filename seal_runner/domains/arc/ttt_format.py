"""ARC prompts as chat conversations, and test-time-training rows with their loss masks (paper §3).

The paper's format: the system turn states the task and lists the demonstrations "{in} -> {out}#",
the user turn is "{test input} -> ", the assistant turn "{test output}#". Every conversation is
rendered with the model's own chat template, so no special token or id is hard-coded: the assistant
answer is located by rendering the conversation without the answer (plus the template's generation
prompt) and with it. The prompt part is tokenised exactly as the engines tokenise a query, and the
rest (answer, "#", the template's end-of-turn and whatever it appends) separately.

`domain.token_layout` chooses between two token layouts:
  ours       a row ends with the answer's end of turn, and a query is the row's prompt, token for token,
             so training sees the same prefix that inference decodes from;
  reference  the reference's (few-shot/self-edit.py `format_and_filter`, arclib/update_model.py
             `_tokenize_and_process`, inference/engine.py `process_requests`): a row is the conversation
             rendered with the generation prompt after the answer, so the output-token loss also labels
             that trailing assistant header (the reference masks up to the second-to-last of Llama 3's
             four "<|end_header_id|>\n\n" pairs); a query loses the template's leading BOS text, so the
             engine's tokenizer adds the only BOS, where a row (tokenised with special tokens from text that
             already starts with the BOS) has two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from seal_runner.choices import GridFormatName, SelfEditHeader, SelfEditWording, TokenLayout
from seal_runner.domains.arc.data import ARCExample
from seal_runner.domains.arc.grids import GridLike, format_compact, format_numpy, parse_compact, parse_numpy
from seal_runner.domains.arc.leave_n import TTTExample
from seal_runner.domains.arc.selfedit import (
    LLAMA3_MARKUP_TOKENS,
    REFERENCE_LLAMA3_PROMPT,
    STRATEGIES,
    SYSTEM_PROMPT,
    selfedit_user_message,
)
from seal_runner.errors import InputError
from seal_runner.lora.batching import IGNORE_INDEX, TrainRow

ANSWER_END = "#"
TASK_INTRO = (
    "Figure out the underlying transformation in the following examples and apply it to the test case. "
    "Here are some examples from this transformation, your answer must follow the format.\n"
)


@dataclass(frozen=True)
class GridFormat:
    """How grids are written in TTT prompts and read back from answers."""

    name: str
    describe: str  # the system turn's line naming the format
    write: Callable[[GridLike], str]
    read: Callable[[str], np.ndarray | None]


GRID_FORMATS: dict[GridFormatName, GridFormat] = {
    GridFormatName.numpy: GridFormat(
        "numpy", "The input-output grids are provided as python arrays:\n", format_numpy, parse_numpy
    ),
    GridFormatName.compact: GridFormat(
        "compact", "The input-output grids are provided as rows of digits:\n", format_compact, parse_compact
    ),
}


def grid_format(name: GridFormatName | str) -> GridFormat:
    """A config's name was checked at composition; a plain string from Python is checked here."""
    if name not in GRID_FORMATS:
        raise ValueError(f"domain.grid_format must be one of {GridFormatName.values()}, got {name!r}")
    return GRID_FORMATS[name]


def ttt_messages(
    demos: Sequence[ARCExample], test_input: GridLike, fmt: GridFormat, answer: GridLike | None = None
) -> list[dict[str, str]]:
    """System (intro + demos), user (test input); plus the assistant answer when `answer` is given."""
    system = TASK_INTRO + fmt.describe
    system += "".join(f"{fmt.write(ex.input)} -> {fmt.write(ex.output)}{ANSWER_END}\n" for ex in demos)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{fmt.write(test_input)} -> "},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": f"{fmt.write(answer)}{ANSWER_END}"})
    return messages


def parse_answer(text: str, fmt: GridFormat) -> np.ndarray | None:
    """The grid before the first "#" (the whole text if the model never wrote one); None if malformed."""
    return fmt.read(text.split(ANSWER_END, 1)[0])


class ChatRenderer:
    """The model's chat template with fixed extra variables (e.g. a pinned `date_string`, which
    Llama 3's template would otherwise fill with today's date)."""

    def __init__(self, tokenizer, template_kwargs: dict | None = None) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the ARC domain needs a chat model: this tokenizer has no chat template")
        self.tokenizer = tokenizer
        self.kwargs = dict(template_kwargs or {})

    def prompt(self, messages: list[dict[str, str]]) -> str:
        """Conversation so far plus the template's generation prompt (what the engines are given)."""
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.kwargs
        )

    def conversation(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, **self.kwargs)

    def selfedit_prompt(
        self,
        demos: Sequence[ARCExample],
        system: str = SYSTEM_PROMPT,
        instruction: str | None = None,
        wording: SelfEditWording = SelfEditWording.ours,
        header: SelfEditHeader = SelfEditHeader.template,
    ) -> str:
        """The self-edit request: system prompt, then demos as digit rows and the tool instructions
        (`instruction` None = the wording's own text), marked up by the chat template or, with
        `header=reference`, by the reference's hand-written Llama 3 header."""
        user = selfedit_user_message(demos, instruction, wording)
        if header == SelfEditHeader.reference:
            self.check_llama3_markup()
            return REFERENCE_LLAMA3_PROMPT.format(system=system, user=user)
        return self.prompt([{"role": "system", "content": system}, {"role": "user", "content": user}])

    def check_llama3_markup(self) -> None:
        """The hand-written header is Llama 3's: each markup token must be one token of this vocabulary."""
        ids = {token: self.tokenizer.convert_tokens_to_ids(token) for token in LLAMA3_MARKUP_TOKENS}
        missing = [  # an unknown token maps to the unk id, or to None where there is no unk token
            token for token, i in ids.items() if i is None or self.tokenizer.convert_ids_to_tokens(i) != token
        ]
        if missing:
            raise InputError(
                f"selfedit_prompt.header=reference writes Llama 3's chat header by hand, but this model's "
                f"tokenizer has no token {missing}; use selfedit_prompt.header=template"
            )

    def prompt_completion(
        self, messages: list[dict[str, str]], trailing_generation_prompt: bool = False
    ) -> tuple[str, str]:
        """Split a finished conversation into (prompt with generation prompt, the rest); with
        `trailing_generation_prompt` the rest ends with the template's generation prompt, as the
        reference renders its TTT rows."""
        prompt = self.prompt(messages[:-1])
        full = self.prompt(messages) if trailing_generation_prompt else self.conversation(messages)
        if not full.startswith(prompt):
            raise ValueError(
                "the chat template renders the conversation without its last turn differently from the "
                "start of the full conversation, so the assistant span cannot be located; prompt ends "
                f"{prompt[-60:]!r}, conversation has {full[len(prompt) - 60 : len(prompt) + 20]!r}"
            )
        return prompt, full[len(prompt) :]


class TTTEncoder:
    """TTT examples -> `TrainRow`s under a strategy, and evaluation prompts; encodings are cached
    because the leave-n pool of a task is built (and length-filtered) once per self-edit."""

    def __init__(
        self,
        tokenizer,
        fmt: GridFormat,
        template_kwargs: dict | None = None,
        layout: TokenLayout = TokenLayout.ours,
    ) -> None:
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.layout = layout
        self.chat = ChatRenderer(tokenizer, template_kwargs)
        self._cache: dict[TTTExample, tuple[list[int], list[int]]] = {}

    def query_prompt(self, demos: Sequence[ARCExample], test_input: GridLike) -> str:
        """The text an engine is given for a query (the engines tokenise it with special tokens)."""
        prompt = self.chat.prompt(ttt_messages(demos, test_input, self.fmt))
        if self.layout == TokenLayout.reference:
            return self._without_template_bos(prompt)
        return prompt

    def _without_template_bos(self, prompt: str) -> str:
        """The prompt minus a leading BOS text when the tokenizer also adds a BOS itself (Llama 3).

        The reference cuts the text through the first "<|begin_of_text|>". Here the cut is made only
        where the engine's tokenizer puts the BOS back; a template whose first token is also the
        tokenizer's `bos_token` but whose tokenizer adds none (SmolLM2's "<|im_start|>") keeps it."""
        bos = self.tokenizer.bos_token
        if not bos or not prompt.startswith(bos):
            return prompt
        added = self.tokenizer("", add_special_tokens=True)["input_ids"]
        return prompt[len(bos) :] if added[:1] == [self.tokenizer.bos_token_id] else prompt

    def _split_ids(self, example: TTTExample) -> tuple[list[int], list[int]]:
        if example not in self._cache:
            messages = ttt_messages(example.demos, example.test.input, self.fmt, example.test.output)
            prompt, completion = self.chat.prompt_completion(
                messages, trailing_generation_prompt=self.layout == TokenLayout.reference
            )
            self._cache[example] = (
                self.tokenizer(prompt, add_special_tokens=True)["input_ids"],
                self.tokenizer(completion, add_special_tokens=False)["input_ids"],
            )
        return self._cache[example]

    def length(self, example: TTTExample) -> int:
        prompt, completion = self._split_ids(example)
        return len(prompt) + len(completion)

    def encode(self, example: TTTExample, strategy: str) -> TrainRow:
        """`train_using_all_tokens`: every token; `train_using_output_tokens`: the assistant answer,
        "#", and what the template appends after it (end of turn; with `layout=reference` also the
        trailing generation prompt) carry labels, the prompt does not."""
        prompt, completion = self._split_ids(example)
        if strategy == "train_using_all_tokens":
            return TrainRow.all_tokens(prompt + completion)
        if strategy == "train_using_output_tokens":
            return TrainRow(prompt + completion, [IGNORE_INDEX] * len(prompt) + completion)
        raise ValueError(f"unknown TTT strategy {strategy!r}; choose from {STRATEGIES}")
