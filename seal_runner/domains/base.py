"""What a domain gives SEAL's outer loop (`stage=restem`): contexts, self-edits, a reward, an evaluation.

The loop (stages/restem.py) knows nothing about passages or grids. Per round it evaluates the policy
on the held-out contexts, samples self-edits on the round's training contexts, has the domain score
them (knowledge: inner update + graded QA; a toy: a string test), selects by `restem.selection`,
finetunes the policy on the kept (prompt -> self-edit) pairs and merges. A domain is picked by
`domain._target_` and built once per run as `instantiate(cfg.domain, run=<RunContext>,
restem=cfg.restem)`: its own group's keys arrive as keyword arguments, the rest is passed in.

Records are plain dicts so on-disk files and resume keys keep their meaning:
- a self-edit (`sample`'s values) has at least `prompt`, `text` (empty = no candidate) and `num_tokens`;
- a candidate (`score`'s items) has `context`, `sample`, `prompt`, `completion`, `reward` and, for the
  baseline rules of seal_runner/selection.py, `baseline`; anything else rides along into rewards.json.
Every method that writes under `out` must skip what is already there, so a killed run resumes.

A domain class may also offer the paper's evaluation table, which `stage=evaluate` runs
(stages/evaluate.py) without building the domain for the outer loop, so as three staticmethods:
`check_conditions(cfg)` (before any work: the rows of `conditions` it offers),
`evaluate_conditions(ctx, started)` (measures them on the run context and returns the summary, `plots`
included) and `format_conditions(summary)` (the console table). Knowledge offers Table 2, ARC Table 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Domain(Protocol):
    #: the tracker summary's final metric is `final/<objective_name>`
    objective_name: str

    def heldout(self) -> list[Any]:
        """The contexts every round's policy is evaluated on."""

    def training_contexts(self, round: int) -> list[Any]:
        """The contexts whose self-edits round `round` samples, scores and learns from."""

    def sample(self, engine: Any, contexts: list[Any], out: Path) -> dict[tuple, dict]:
        """The round's self-edits, (context, sample) -> record, kept in `out` (resumable)."""

    def score(
        self, engines: Any, policy: str, contexts: list[Any], edits: dict[tuple, dict], out: Path
    ) -> list[dict]:
        """One candidate per non-empty self-edit in `edits`, rewarded under `policy`."""

    def round_fields(self, edits: dict[tuple, dict], candidates: list[dict]) -> dict:
        """Extra fields of the round's record in summary.json (failure and status counts)."""

    def evaluate(self, engines: Any, policy: str, heldout: list[Any], out: Path) -> dict:
        """The held-out record of `policy` (the round's `heldout` in summary.json), kept in `out`."""

    def round_metrics(self, record: dict) -> dict[str, float]:
        """The tracker's scalars for one round's record."""

    def report(self, heldout: list[Any], rounds: list[dict]) -> dict:
        """The summary's domain fields, `objective` (the number a sweeper optimises) among them."""

    def plots(self, summary: dict, run_dir: Path) -> dict[str, str]:
        """Pictures of the run, name -> path ({} for none)."""

    def format_table(self, summary: dict) -> str:
        """The console table printed at the end."""
