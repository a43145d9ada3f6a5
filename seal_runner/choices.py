"""Closed choices of the config as Enums, so a typo fails when Hydra composes the config.

OmegaConf checks an Enum-typed field on every assignment: `seal-run lora.mode=banana` stops at
composition, before anything loads, with "Invalid value 'banana', expected one of [fast, reference]"
and the key. Overrides are parsed by member name, so every member's name is its value.

Members are `str`s that print as their value (what Python 3.11's StrEnum does, on 3.10 too): a member
equals its string, formats into messages and paths as it, and is written to JSON as it, so code and
files that hold plain strings keep working. Choices whose own module is light enough for config.py
to import (no torch) live there and derive from `Choice`: `restem.selection` (selection.py),
`continual.strategy` (domains/knowledge/strategies.py) and `grader.rule` (graders/lexical.py).
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A closed config choice: a `str` whose str() and format() are its value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)

    @classmethod
    def values(cls) -> list[str]:
        """The allowed values in declaration order, for error messages."""
        return [member.value for member in cls]


class Stage(Choice):
    """`stage`: the job; each value is the module under seal_runner/stages/ whose `run(cfg)` does it."""

    evaluate = "evaluate"
    restem = "restem"
    continual = "continual"
    cpt = "cpt"


class LoraMode(Choice):
    """`lora.mode`: K adapters trained together over one base (fast) or the paper's padded bs-1 loop;
    `cpt.mode`: CPT on unpadded rows (fast) or padded as the reference (outer.train_on_texts)."""

    fast = "fast"
    reference = "reference"


class LossNormalization(Choice):
    """`lora.loss_normalization`: mean over content tokens, or the paper's ÷ (batch × max_length)."""

    tokens = "tokens"
    reference = "reference"


class Autocast(Choice):
    """`lora.autocast`: the inner update's forward pass in the weights' dtype (none), or under bf16
    autocast (bfloat16) with the LoRA weights, optimizer state and loss kept in fp32; lora/trainer.py."""

    none = "none"
    bfloat16 = "bfloat16"


class AttnImplementation(Choice):
    """`lora.attn_implementation`: the attention kernel of the inner update's base model, as
    transformers names it. On CPU `eager` trains faster than `sdpa` (whose flash-attention backward is
    slow there, in bf16 above all); RESULTS.md, "Inner loop"."""

    sdpa = "sdpa"
    eager = "eager"


class LrSchedule(Choice):
    """`lora.lr_schedule`: linear decay (knowledge) or cosine after warmup (ARC); lora/optim.py."""

    linear = "linear"
    cosine = "cosine"


class Reward(Choice):
    """`restem.reward`: knowledge's inner update + graded QA (the paper), the same update scored by
    gold-answer log-likelihood, or the no-update likelihood proxy; ARC's solved (1 when the
    self-edit's test-time training solves the task, else 0)."""

    inner = "inner"
    likelihood = "likelihood"
    proxy = "proxy"
    solved = "solved"


class RewardBaseline(Choice):
    """`restem.reward_baseline`: what a candidate must beat to count as a gain under `positive_gain` and
    `threshold` (its record's `baseline`). `no_update`: the learner before any update (the paper's
    accuracy reward; knowledge's likelihood reward is already a gain over it); `passage`: the learner
    after an update on the context alone, so only self-edits that add to the passage are kept (one
    more inner update per context; knowledge's inner and likelihood rewards). Under `best_of_k` the
    choice changes nothing: every candidate of a context shares its baseline."""

    no_update = "no_update"
    passage = "passage"


class RestemLearner(Choice):
    """`restem.learner`: the model every inner update of a round starts from, in its rewards and its
    held-out evaluation. `policy` (the paper): the round's policy learns its own self-edits; `base`:
    the starting model learns every round's, so rewards and rounds compare writers on one fixed
    learner, apart from what SFT did to the policy's own knowledge (RESULTS.md, "The SEAL effect on
    CPU": that drift inflated run5's round-1 rewards)."""

    policy = "policy"
    base = "base"


class ArcSource(Choice):
    """`domain.source` (ARC): ARC-AGI JSON files or procedurally generated tasks."""

    files = "files"
    generated = "generated"


class GridFormatName(Choice):
    """`domain.grid_format` (ARC): numpy-style arrays (the paper) or rows of digits; ttt_format.py."""

    numpy = "numpy"
    compact = "compact"


class EvalQueryRule(Choice):
    """`domain.eval_queries` (ARC): how orders and variants are drawn; domains/arc/voting.py."""

    ours = "ours"
    reference = "reference"


class VoteRule(Choice):
    """`domain.voting` (ARC): our two-level vote (voting.py) or the reference's (reference_vote.py)."""

    ours = "ours"
    reference = "reference"


class TTTAugmentationRule(Choice):
    """`domain.ttt_augmentation` (ARC): how the leave-n pool's translation and recoloured copies are made,
    ours or the reference's (few-shot/self-edit.py and arclib/augmenters.py); domains/arc/leave_n.py."""

    ours = "ours"
    reference = "reference"


class TestInputs(Choice):
    """`domain.test_inputs` (ARC): how a task with several test inputs is scored. `per_task` (the
    reference): one unit per source task, whose self-edits each train one adapter that answers every
    test input, solved only when all are; `split`: one independent task per test input ("{id}-{i}",
    its own self-edits), seal-runner's behaviour before the option; domains/arc/data.py."""

    split = "split"
    per_task = "per_task"


class Learner(Choice):
    """`selfedit_sources.<name>.learner` (stage=evaluate, a policy source): which model a row's inner
    updates start from and whose answers are graded. `writer` (the paper's SEAL row): the policy that
    wrote the self-edits learns from them, its own no-update accuracy the baseline; `run`: the run's
    model learns them, as it learns GPT-4.1's, so writers are compared on one learner, apart from what
    training did to the policy's own knowledge; domains/knowledge/sources.py."""

    writer = "writer"
    run = "run"


class SelfEditWording(Choice):
    """`selfedit_prompt.wording` (ARC): the reference's request text and demo layout, or ours (a complete
    valid example edit and one line per augmentation group); domains/arc/selfedit.py."""

    ours = "ours"
    reference = "reference"


class SelfEditHeader(Choice):
    """`selfedit_prompt.header` (ARC): the self-edit prompt's chat markup from the model's chat template,
    or the Llama 3 header the reference writes by hand (no date lines); domains/arc/selfedit.py."""

    template = "template"
    reference = "reference"


class TokenLayout(Choice):
    """`domain.token_layout` (ARC): TTT rows end at the answer's end of turn and queries are tokenised as
    the rows' prompts (ours), or the reference's rows with the trailing generation prompt labelled and
    queries with one BOS fewer; domains/arc/ttt_format.py."""

    ours = "ours"
    reference = "reference"


# `grader.on_failure`: an API item that still fails after its retries raises, or is left ungraded.
# `raise` is a keyword, so the members are declared by name: OnFailure["raise"], OnFailure.skip.
OnFailure = Choice("OnFailure", [("raise", "raise"), ("skip", "skip")], module=__name__, qualname="OnFailure")


class OpenAIApi(Choice):
    """`engine.api`: raw prompts to /completions (vLLM) or one user message to /chat/completions."""

    completions = "completions"
    chat = "chat"
