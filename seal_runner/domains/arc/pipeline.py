"""The ARC domain's resumable steps, used by domain.py for every condition and BC round.

Each step appends its records to a JSONL file as it goes and skips what is already on disk, so a
rerun of a run directory does no new sampling, training or decoding:
  sample_selfedits  task -> JSON self-edits (invalid ones re-sampled up to a budget, all attempts kept)
  build_jobs        (task, self-edit) -> test-time-training job (leave-n data, augmentation, guards)
  train_units       job key -> inner-update record with the adapter directory
  answer_units      (unit key, adapter) -> per test input augmented queries, votes, pass@2; the unit
                    is solved only when every test input is
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seal_runner.choices import VoteRule
from seal_runner.domains.arc.augment import (
    FLIP_LR,
    FLIP_UD,
    ROTATE_90,
    ROTATE_180,
    ROTATE_270,
    TRANSPOSE,
)
from seal_runner.domains.arc.data import ARCExample, ARCTask
from seal_runner.domains.arc.grids import to_list
from seal_runner.domains.arc.leave_n import build_ttt_examples
from seal_runner.domains.arc.reference_vote import reference_vote
from seal_runner.domains.arc.selfedit import (
    SYSTEM_PROMPT,
    ParsedSelfEdit,
    ParseError,
    TTTPlan,
    parse_selfedit,
    selected_groups,
    ttt_plan,
)
from seal_runner.domains.arc.ttt_format import TTTEncoder, parse_answer
from seal_runner.domains.arc.voting import build_eval_queries, is_solved, vote
from seal_runner.engines.base import LoraAdapter, Sampling
from seal_runner.inner import train_and_record, update_key
from seal_runner.lora.trainer import InnerJob
from seal_runner.records import ResumableLog, derive_seed

log = logging.getLogger(__name__)

VARIANTS = {a.name: a for a in (TRANSPOSE, FLIP_UD, FLIP_LR, ROTATE_90, ROTATE_180, ROTATE_270)}


def sample_selfedits(
    cfg, engine, encoder: TTTEncoder, tasks: Sequence[ARCTask], n_valid: int, path: Path, seed_tag: str
) -> dict[tuple[str, int], dict]:
    """Up to `n_valid` parsed self-edits per task, keyed (task id, sample index).

    Completions that do not parse are recorded with the reason and drawn again, in waves, until the
    task has `n_valid` or `domain.max_sample_attempts` attempts are spent (then it has fewer; the
    missing pairs count as unsolved). With `domain.skip_duplicate_selfedits` an edit equal to an
    earlier one of the same task is recorded as a duplicate and not used.
    """
    attempts = ResumableLog(path, key=lambda r: (r["task"], r["attempt"]))
    records = attempts.records
    budget = cfg.domain.max_sample_attempts
    sampling = Sampling(cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.max_tokens)
    p = cfg.selfedit_prompt
    wording = {
        "system": p.system or SYSTEM_PROMPT,
        "instruction": p.instruction,
        "wording": p.wording,
        "header": p.header,
    }
    prompts = {t.task_id: encoder.chat.selfedit_prompt(t.train, **wording) for t in tasks}
    while True:
        todo = []
        for task in tasks:
            mine = [r for r in records if r["task"] == task.task_id]
            valid = sum(r["status"] == "valid" for r in mine)
            missing = min(n_valid - valid, budget - len(mine))
            todo += [(task.task_id, len(mine) + i) for i in range(max(0, missing))]
        if not todo:
            break
        seeds = [derive_seed(cfg.seed, "arc-selfedit", seed_tag, tid, attempt) for tid, attempt in todo]
        completions = engine.generate([prompts[tid] for tid, _ in todo], sampling, seeds=seeds)
        new = []
        for (tid, attempt), completion in zip(todo, completions, strict=True):
            new.append(_attempt_record(tid, attempt, prompts[tid], completion, records + new, cfg))
        attempts.append(new)
    edits = {}
    for task in tasks:
        valid = [r for r in records if r["task"] == task.task_id and r["status"] == "valid"]
        for sample, record in enumerate(valid[:n_valid]):
            edits[(task.task_id, sample)] = record
    return edits


def _attempt_record(tid: str, attempt: int, prompt: str, completion, earlier: list[dict], cfg) -> dict:
    text = completion.text.strip()
    parsed = parse_selfedit(text, strict=cfg.domain.strict_json)
    record = {
        "task": tid,
        "attempt": attempt,
        "prompt": prompt,
        "text": text,
        "num_tokens": completion.num_tokens,
        "finish_reason": completion.finish_reason,
    }
    if isinstance(parsed, ParseError):
        return record | {"status": "invalid", "reason": parsed.reason}
    edit = asdict(parsed)
    duplicate = any(r["task"] == tid and r.get("edit") == edit for r in earlier if r["status"] == "valid")
    if duplicate and cfg.domain.skip_duplicate_selfedits:
        return record | {"status": "duplicate", "edit": edit}
    return record | {"status": "valid", "edit": edit}


@dataclass(frozen=True)
class Unit:
    """One scored pair: a task and how it is adapted (plan None = no adapter, i.e. ICL)."""

    key: str
    task: ARCTask
    plan: TTTPlan | None = None
    job: InnerJob | None = None
    n_examples: int = 0


def fixed_edit(oracle_cfg) -> ParsedSelfEdit:
    """The oracle's human-chosen configuration, expressed as a self-edit."""
    groups = set(oracle_cfg.augmentations)
    return ParsedSelfEdit(
        "basic" in groups,
        "size" in groups,
        "chain" in groups,
        "repeat" in groups,
        oracle_cfg.strategy,
        float(oracle_cfg.learning_rate),
        int(oracle_cfg.num_train_epochs),
    )


def build_unit(
    cfg, encoder: TTTEncoder, key: str, task: ARCTask, edit: ParsedSelfEdit, seed: int, step_cap: float
) -> Unit:
    """Leave-n data for the edit's augmentations, the paper's guards, and the inner job it implies."""
    d = cfg.domain
    pool = build_ttt_examples(
        task,
        selected_groups(edit),
        ns=tuple(d.leave_n),
        seed=d.ttt_data_seed,
        max_grid_side=d.max_grid_side,
        max_examples=d.max_ttt_examples,
        length_fn=encoder.length,
        max_tokens=cfg.lora.max_length,
        rule=d.ttt_augmentation,
    )
    plan = ttt_plan(edit, len(pool), batch_size=cfg.lora.batch_size, step_cap=step_cap)
    rows = [encoder.encode(ex, plan.strategy) for ex in pool] if plan.num_train_epochs else []
    job = InnerJob(key, [], seed, rows=rows, lr=plan.learning_rate or 0.0, epochs=plan.num_train_epochs)
    return Unit(key, task, plan, job, len(pool))


def edit_from_record(record: dict) -> ParsedSelfEdit:
    return ParsedSelfEdit(**record["edit"])


def step_cap_for(cfg, oracle: bool) -> float:
    """The paper's cap on epochs x examples / batch (the oracle's fixed configuration is exempt
    unless `domain.oracle.apply_step_cap`)."""
    return math.inf if oracle and not cfg.domain.oracle.apply_step_cap else cfg.domain.step_cap


def train_units(cfg, model_path: str, tokenizer, units: list[Unit], path: Path, adapter_root: Path, tracker):
    """Inner updates for units not yet recorded (0-epoch plans too: their untrained adapter is kept
    and evaluated, as in the paper)."""
    updates = ResumableLog(path, key=update_key)
    todo = updates.todo([u for u in units if u.job is not None], key=lambda u: u.key)
    if not todo:
        return updates.done
    by_key = {u.key: u for u in todo}

    def describe(job: InnerJob) -> dict:
        unit = by_key[job.key]
        return {"task": unit.task.task_id, "plan": asdict(unit.plan), "examples": unit.n_examples}

    new = train_and_record(
        cfg, model_path, tokenizer, [u.job for u in todo], path, adapter_root, tracker, describe
    )
    return updates.done | {update_key(r): r for r in new}


def answer_units(
    cfg, engine, encoder: TTTEncoder, units: list[tuple[str, ARCTask, LoraAdapter | None]], path: Path
) -> dict[str, dict]:
    """Augmented queries for each of a unit's test inputs, decoded greedily with the unit's one adapter
    (all adapters of a chunk in one engine call), mapped back, voted into 2 attempts per test input and
    scored pass@2; resumable per chunk."""
    results = ResumableLog(path, key=lambda r: r["key"])
    todo = results.todo(units, key=lambda u: u[0])
    chunk_size = max(1, cfg.qa_engine.max_loras)
    sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=cfg.domain.answer_max_tokens)
    per_task: dict[str, list[tuple[list, int]]] = {}  # task id -> per test input (queries, dropped)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        prompts, owners, queries = [], [], []  # owner: (unit index in the chunk, test input index)
        for index, (_, task, _) in enumerate(chunk):
            if task.task_id not in per_task:
                per_task[task.task_id] = eval_queries(cfg, encoder, task)
            for test_index, (kept, _) in enumerate(per_task[task.task_id]):
                for query, prompt in kept:
                    prompts.append(prompt)
                    owners.append((index, test_index))
                    queries.append(query)
        adapters = [chunk[i][2] for i, _ in owners]
        completions = engine.generate(prompts, sampling, adapters=adapters) if prompts else []
        new = []
        for index, (key, task, _) in enumerate(chunk):
            answered = [
                [(q, c) for q, c, o in zip(queries, completions, owners, strict=True) if o == (index, t)]
                for t in range(len(task.test))
            ]
            dropped = [d for _, d in per_task[task.task_id]]
            new.append(_score(key, task, answered, dropped, encoder, cfg.domain.voting))
        results.append(new)
    return results.done


def eval_queries(cfg, encoder: TTTEncoder, task: ARCTask) -> list[tuple[list[tuple], int]]:
    """Per test input, its evaluation queries with their prompts, minus those too long for the context
    window (counted). They are the same for every adapter of the task: seeded by the task id, or for
    input i of a multi-test task by "{id}-{i}", its id under `domain.test_inputs=split`, so both
    settings ask each input the same queries."""
    d = cfg.domain
    unknown = set(d.eval_variants) - set(VARIANTS)
    if unknown:
        raise ValueError(
            f"domain.eval_variants has unknown transforms {sorted(unknown)}; choose from {sorted(VARIANTS)}"
        )
    variants = [VARIANTS[name] for name in d.eval_variants]
    limit = cfg.model.max_model_len - d.answer_max_tokens
    out = []
    for i, test in enumerate(task.test):
        seed_id = task.task_id if len(task.test) == 1 else f"{task.task_id}-{i}"
        queries = build_eval_queries(
            task.train,
            test.input,
            np.random.default_rng(derive_seed(cfg.seed, "arc-queries", seed_id)),
            n_permutations=d.eval_permutations,
            variants=variants,
            rule=d.eval_queries,
        )
        kept = []
        for query in queries:
            prompt = encoder.query_prompt(query.demos, query.test_input)
            if len(encoder.tokenizer(prompt, add_special_tokens=True)["input_ids"]) <= limit:
                kept.append((query, prompt))
        out.append((kept, len(queries) - len(kept)))
    return out


def _score(
    key: str,
    task: ARCTask,
    answered: list[list[tuple]],
    dropped: list[int],
    encoder: TTTEncoder,
    voting: VoteRule,
) -> dict:
    """The unit's record: each test input voted into its own 2 attempts (`tests`), the unit solved only
    when every input is (the reference's `evaluate`, few-shot/arclib/eval.py: `all_true and
    all_submitted`), counts summed over the inputs."""
    tests = [
        _score_test(test, mine, n_dropped, encoder, voting)
        for test, mine, n_dropped in zip(task.test, answered, dropped, strict=True)
    ]
    counts = ("queries", "dropped_queries", "parsed", "correct_answers")
    return {
        "key": key,
        "task": task.task_id,
        "solved": all(t["solved"] for t in tests),
        **{field: sum(t[field] for t in tests) for field in counts},
        "tests": tests,
    }


def _score_test(
    test: ARCExample, answered: list[tuple], dropped: int, encoder: TTTEncoder, voting: VoteRule
) -> dict:
    predictions = []
    for query, completion in answered:
        grid = parse_answer(completion.text, encoder.fmt)
        predictions.append((query.category, None if grid is None else query.restore(grid)))
    attempts = reference_vote(predictions) if voting == VoteRule.reference else vote(predictions)
    return {
        "solved": test.output is not None and is_solved([attempts], [test.output]),
        "attempts": [to_list(a) for a in attempts],
        "queries": len(answered),
        "dropped_queries": dropped,
        "parsed": sum(g is not None for _, g in predictions),
        "correct_answers": sum(
            g is not None and test.output is not None and np.array_equal(g, test.output)
            for _, g in predictions
        ),
        "answers": [c.text for _, c in answered],
    }
