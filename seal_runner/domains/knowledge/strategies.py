"""How sequential self-edits are learned (`continual.strategy`): attacks on the paper's forgetting.

Every strategy shares stage=continual's protocol (same passages, seeds and number of steps; after
step t the model is evaluated on passages 1..t with step t's adapter on top of the chain of earlier
updates, then that adapter is merged into the chain); they differ only in which model writes and
learns a self-edit and in what it is trained on:

- `merge` (the paper): the latest merged model writes the self-edit and is updated on it alone.
- `replay`: as merge, but each update also trains on a seeded sample of `continual.replay_sequences`
  training sequences of the earlier steps' self-edits, rehearsing what it must not erase.
- `isolation`: one adapter per passage, each written and trained on the *untouched* model and never
  trained on top of another; they are composed at evaluation time by summing their LoRA deltas
  (base + sum_t B_t A_t * scale). Summing is PEFT's `add_weighted_adapter(combination_type="cat")`
  with unit weights (exact, unlike "linear", which mixes A and B separately and adds cross terms);
  we realise the same sum by folding each adapter into the previous composition, so no adapter of
  rank t*r has to be served (vLLM caps max_lora_rank) and evaluation runs on the same engine path
  as merge.
- `retention`: as merge, but the learner writes `continual.candidates` self-edits, each is trained
  and scored by reward = accuracy on the new passage - lambda x (drop of accuracy on the earlier
  passages' questions), and the best one is merged: ReSTEM's selection with a reward that prefers
  self-edits that teach without erasing. lambda = 0 is the same best-of-k selection on the new
  passage alone, the control that separates the selection from the retention term. The probe is
  the earlier passages' questions themselves (the forgetting matrix's questions), so its forgetting
  numbers are measured on questions it selected for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from seal_runner.choices import Choice
from seal_runner.errors import InputError


class ContinualStrategy(Choice):
    """`continual.strategy`: the strategies above."""

    merge = "merge"
    replay = "replay"
    isolation = "isolation"
    retention = "retention"


@dataclass(frozen=True)
class Merge:
    """The paper's protocol and the baseline every other strategy is measured against."""

    candidates: int = 1  # self-edits written and trained per step; the best by `reward` is merged

    def learner(self, base: str, current: str) -> str:
        """The model that writes step t's self-edit and is updated on it."""
        return current

    def training_sequences(self, new: list[str], earlier: list[list[str]], seed: int) -> list[str]:
        """Step t's inner-update data, given the new self-edit's sequences and those of steps < t."""
        return new


@dataclass(frozen=True)
class Replay(Merge):
    replay_sequences: int = 8

    def training_sequences(self, new: list[str], earlier: list[list[str]], seed: int) -> list[str]:
        if not new:  # a failed self-edit stays a failed update, not a replay-only one
            return new
        pool = [sequence for edit in earlier for sequence in edit]
        return new + random.Random(seed).sample(pool, min(self.replay_sequences, len(pool)))


@dataclass(frozen=True)
class Isolation(Merge):
    def learner(self, base: str, current: str) -> str:
        return base


@dataclass(frozen=True)
class Retention(Merge):
    retention_lambda: float = 1.0

    def reward(self, new_accuracy: float, probe_before: float | None, probe_after: float | None) -> float:
        """Accuracy on the new passage minus lambda x the drop on the earlier passages (a gain on
        them counts in the candidate's favour); step 1 has no earlier passage and no penalty."""
        if probe_before is None or probe_after is None:
            return new_accuracy
        return new_accuracy - self.retention_lambda * (probe_before - probe_after)


def build_strategy(
    name: ContinualStrategy | str, replay_sequences: int, candidates: int = 4, retention_lambda: float = 1.0
) -> Merge:
    """A config's name was checked at composition; a plain string from Python is checked here."""
    strategies = {
        ContinualStrategy.merge: lambda: Merge(),
        ContinualStrategy.replay: lambda: Replay(replay_sequences=replay_sequences),
        ContinualStrategy.isolation: lambda: Isolation(),
        ContinualStrategy.retention: lambda: Retention(
            candidates=candidates, retention_lambda=retention_lambda
        ),
    }
    if name not in strategies:
        raise InputError(f"continual.strategy={name!r} is unknown; choose from {ContinualStrategy.values()}")
    if name == ContinualStrategy.replay and replay_sequences < 1:
        raise InputError(f"continual.replay_sequences={replay_sequences} must be >= 1 for replay")
    if name == ContinualStrategy.retention and candidates < 2:
        raise InputError(
            f"continual.candidates={candidates} must be >= 2 for retention (it selects among them)"
        )
    return strategies[name]()
