"""`stage=arc`: few-shot ARC (paper §3, Table 1) — self-edits that configure test-time training.

Conditions, all scored on the evaluation tasks as the fraction of (task, self-edit) pairs solved:
  icl       policy_0, no adaptation, the same augmented-query voting pipeline;
  ttt_base  policy_0 writes `eval_samples_per_task` JSON self-edits per task, each one trains a
            fresh LoRA on policy_0 (test-time training) and the adapted model is scored pass@2;
  seal      the same after `restem.rounds` rounds of behaviour cloning (ReSTEM with a 0/1 reward):
            the policy samples `train_samples_per_task` self-edits per training task, keeps every
            (prompt -> self-edit) whose adapted model solved its task, SFTs on them and merges;
            the current policy is both the self-edit generator and the base of test-time training;
  oracle    one fixed configuration per task (`domain.oracle`, all augmentations by default).
Layout: eval/<condition>/ and round_<r>/ hold self_edits.jsonl (every attempt), updates.jsonl,
adapters/, results.jsonl and summary.json; round_<r>/sft.json and policy/ the BC update; the run's
summary.json and table.md the Table 1 rows. Every step skips what is on disk, so a rerun is free.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_runner.choices import ArcSource
from seal_runner.config import SFTConfig
from seal_runner.domains.arc.data import ARCTask, load_tasks
from seal_runner.domains.arc.generator import generate_tasks
from seal_runner.domains.arc.pipeline import (
    answer_units,
    build_unit,
    edit_from_record,
    fixed_edit,
    sample_selfedits,
    step_cap_for,
    train_units,
)
from seal_runner.domains.arc.ttt_format import TTTEncoder, grid_format
from seal_runner.engines.base import LoraAdapter
from seal_runner.errors import InputError
from seal_runner.records import derive_seed, read_jsonl, write_json
from seal_runner.stages.common import Engines, RunContext, setup_run, versions

log = logging.getLogger(__name__)

CONDITIONS = ("icl", "ttt_base", "seal", "oracle")
TABLE_ROWS = {
    "icl": "ICL",
    "ttt_base": "TTT + Self-Edit (w/o prior RL)",
    "seal": "SEAL",
    "oracle": "Oracle TTT",
}
PAPER = {"icl": 0.0, "ttt_base": 20.0, "seal": 72.5, "oracle": 100.0}


def load_split(cfg: DictConfig, split: str) -> list[ARCTask]:
    """Training or evaluation tasks from ARC-AGI files or the procedural generator."""
    d = cfg.domain
    if d.source == ArcSource.generated:
        g = d.generated
        seed = g[f"{split}_seed"]
        tasks = generate_tasks(list(g.families), g[f"{split}_per_family"], seed)
        return [
            replace(t, task_id=f"{t.task_id}-{split}{seed}", source_id=f"{t.task_id}-{split}{seed}")
            for t in tasks
        ]
    challenges, solutions = d[f"{split}_challenges"], d[f"{split}_solutions"]  # ArcSource.files
    if not challenges or not Path(challenges).exists():
        raise FileNotFoundError(
            f"domain.{split}_challenges={challenges!r} does not exist; fetch ARC-AGI with "
            "scripts/download_arc.py or use domain.source=generated"
        )
    ids = d[f"{split}_task_ids"]
    return load_tasks(challenges, solutions, task_ids=None if ids is None else list(ids))


def run_condition(
    ctx: RunContext,
    engines: Engines,
    policy: str,
    encoder: TTTEncoder,
    tasks: list[ARCTask],
    out: Path,
    mode: str,
    samples: int = 1,
) -> dict:
    """Score one condition (`mode` icl | selfedit | oracle) of `policy` on `tasks` under `out`."""
    cfg = ctx.cfg
    tag = str(out.relative_to(ctx.run_dir))
    edits: dict[tuple[str, int], dict] = {}
    if mode == "selfedit":
        edits = sample_selfedits(cfg, engines.sampler, encoder, tasks, samples, out / "self_edits.jsonl", tag)
    elif mode == "oracle":
        oracle = {"edit": OmegaConf.to_container(cfg.domain.oracle), "prompt": None, "text": None}
        edits = {(t.task_id, 0): oracle for t in tasks}
    by_id = {t.task_id: t for t in tasks}
    expected = len(tasks) * (1 if mode in ("icl", "oracle") else samples)
    if mode == "icl":
        units = [(t.task_id, t, None) for t in tasks]
        updates: dict[str, dict] = {}
    else:
        updates = {r["key"]: r for r in read_jsonl(out / "updates.jsonl")}
        pending = []
        for (tid, sample), record in edits.items():
            key = f"{tid}/s{sample}"
            if key in updates:
                continue
            edit = fixed_edit(cfg.domain.oracle) if mode == "oracle" else edit_from_record(record)
            seed = derive_seed(cfg.seed, tag, tid, sample)
            pending.append(
                build_unit(cfg, encoder, key, by_id[tid], edit, seed, step_cap_for(cfg, mode == "oracle"))
            )
        if pending:
            updates = train_units(
                cfg, policy, ctx.tokenizer, pending, out / "updates.jsonl", out / "adapters", ctx.tracker
            )
        units = [
            (key, by_id[u["task"]], LoraAdapter(f"{tag}/{key}", u["adapter"]))
            for key, u in updates.items()
            if u["adapter"]
        ]
    results = answer_units(cfg, engines.qa, encoder, units, out / "results.jsonl")
    summary = condition_summary(results, updates, edits, expected, out)
    write_json(out / "summary.json", summary)
    ctx.tracker.log({f"{tag}/success_rate": summary["success_rate"]})
    return summary


def condition_summary(
    results: dict[str, dict], updates: dict[str, dict], edits: dict, expected: int, out: Path
) -> dict:
    """Success rate = solved pairs / expected pairs: self-edits never sampled validly (budget spent)
    and failed inner updates count as unsolved pairs."""
    attempts = read_jsonl(out / "self_edits.jsonl")
    solved = sum(r["solved"] for r in results.values())
    per_task: dict[str, int] = {}
    for r in results.values():
        per_task[r["task"]] = per_task.get(r["task"], 0) + int(r["solved"])
    return {
        "pairs": expected,
        "scored": len(results),
        "solved": solved,
        "success_rate": solved / max(1, expected),
        "solved_per_task": per_task,
        "sample_attempts": len(attempts),
        "invalid_attempts": sum(a["status"] == "invalid" for a in attempts),
        "duplicate_attempts": sum(a["status"] == "duplicate" for a in attempts),
        "missing_selfedits": expected - len(edits) if attempts else 0,
        "zero_epoch_plans": sum(u["plan"]["num_train_epochs"] == 0 for u in updates.values()),
        "failed_updates": sum(bool(u["failed"]) for u in updates.values()),
        "mean_queries": sum(r["queries"] for r in results.values()) / max(1, len(results)),
        "parsed_answers": sum(r["parsed"] for r in results.values()),
        "correct_answers": sum(r["correct_answers"] for r in results.values()),
        "inner_seconds": sum(u["seconds"] for u in updates.values()),
    }


def behaviour_clone(ctx: RunContext, policy: str, out: Path) -> tuple[str, dict]:
    """SFT `policy` on every (prompt -> self-edit) of round `out` whose adapted model solved its task."""
    results = {r["key"]: r for r in read_jsonl(out / "results.jsonl")}
    valid = {}
    for record in read_jsonl(out / "self_edits.jsonl"):
        if record["status"] == "valid":
            valid.setdefault(record["task"], []).append(record)
    pairs = []
    for tid, records in valid.items():
        for sample, record in enumerate(records):
            if results.get(f"{tid}/s{sample}", {}).get("solved"):
                pairs.append(
                    {"task": tid, "sample": sample, "prompt": record["prompt"], "completion": record["text"]}
                )
    write_json(out / "sft.json", pairs)
    if not pairs:
        log.warning("%s: no self-edit solved its task; the policy is unchanged", out.name)
        return policy, {"examples": 0}
    from seal_runner.outer import train_sft

    sft_cfg = SFTConfig(**OmegaConf.to_container(ctx.cfg.sft, resolve=True))
    stats = train_sft(
        policy,
        [(p["prompt"], p["completion"]) for p in pairs],
        out / "policy",
        sft_cfg,
        device=ctx.cfg.device,
        dtype=ctx.cfg.model.dtype,
    )
    return str(out / "policy"), {
        k: stats[k] for k in ("examples", "steps", "final_loss", "seconds", "resumed")
    }


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    if cfg.domain.name != "arc":
        raise InputError(f"stage=arc needs domain=arc (got domain.name={cfg.domain.name!r})")
    unknown = set(cfg.conditions) - set(CONDITIONS)
    if unknown:
        raise InputError(f"conditions {sorted(unknown)} are not ARC conditions; choose from {CONDITIONS}")
    ctx = setup_run(cfg)
    d = cfg.domain
    eval_tasks = load_split(cfg, "eval")
    train_tasks = load_split(cfg, "train") if "seal" in cfg.conditions else []
    write_json(
        ctx.run_dir / "tasks.json",
        {"train": [t.task_id for t in train_tasks], "eval": [t.task_id for t in eval_tasks]},
    )
    encoder = TTTEncoder(ctx.tokenizer, grid_format(d.grid_format), dict(d.chat_template_kwargs))
    policy = ctx.model_path
    conditions: dict[str, dict] = {}
    timings: dict[str, float] = {}
    engines = ctx.engines_for(policy)
    for name, mode in (("icl", "icl"), ("ttt_base", "selfedit"), ("oracle", "oracle")):
        if name in cfg.conditions:
            t0 = time.perf_counter()
            out = ctx.run_dir / "eval" / name
            conditions[name] = run_condition(
                ctx, engines, policy, encoder, eval_tasks, out, mode, d.eval_samples_per_task
            )
            timings[name] = time.perf_counter() - t0
    rounds = []
    if "seal" in cfg.conditions:
        for r in range(cfg.restem.rounds):
            t0 = time.perf_counter()
            out = ctx.run_dir / f"round_{r}"
            train = run_condition(
                ctx, engines, policy, encoder, train_tasks, out, "selfedit", d.train_samples_per_task
            )
            engines.close()
            policy, sft = behaviour_clone(ctx, policy, out)
            engines = ctx.engines_for(policy)
            rounds.append(
                {
                    "round": r,
                    "train": train,
                    "sft": sft,
                    "policy": policy,
                    "seconds": time.perf_counter() - t0,
                }
            )
            ctx.tracker.log(
                {"round": r, "train/success_rate": train["success_rate"], "bc/examples": sft["examples"]}
            )
        t0 = time.perf_counter()
        out = ctx.run_dir / "eval" / "seal"
        conditions["seal"] = run_condition(
            ctx, engines, policy, encoder, eval_tasks, out, "selfedit", d.eval_samples_per_task
        )
        timings["seal"] = time.perf_counter() - t0
    engines.close()
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "arc",
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "eval_tasks": len(eval_tasks),
        "train_tasks": len(train_tasks),
        "conditions": conditions,
        "rounds": rounds,
        "final_policy": policy,
        "condition_seconds": timings,
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": conditions.get("seal", next(iter(conditions.values()), {})).get("success_rate"),
    }
    table = format_table(summary)
    write_json(ctx.run_dir / "summary.json", summary)
    (ctx.run_dir / "table.md").write_text(table + "\n")
    ctx.tracker.summary({f"table1/{k}": v["success_rate"] for k, v in conditions.items()})
    ctx.tracker.table(
        "table1",
        [
            {
                "method": TABLE_ROWS[k],
                "success_rate": v["success_rate"],
                "solved": v["solved"],
                "pairs": v["pairs"],
            }
            for k, v in conditions.items()
        ],
    )
    ctx.tracker.finish()
    print(table)
    return summary


def format_table(summary: dict) -> str:
    """The paper's Table 1 layout: one row per method, success rate over (task, self-edit) pairs."""
    lines = [
        f"\n{summary['experiment']}: few-shot ARC, {summary['eval_tasks']} evaluation tasks "
        f"({summary['train_tasks']} training tasks for RL)",
        "",
        f"| {'Method':<32} | {'Success Rate (%)':>16} | {'solved / pairs':>14} | {'paper (%)':>9} |",
        f"|{'-' * 34}|{'-' * 18}|{'-' * 16}|{'-' * 11}|",
    ]
    for key in CONDITIONS:
        if key in summary["conditions"]:
            c = summary["conditions"][key]
            lines.append(
                f"| {TABLE_ROWS[key]:<32} | {100 * c['success_rate']:>16.1f} | "
                f"{str(c['solved']) + ' / ' + str(c['pairs']):>14} | {PAPER[key]:>9.1f} |"
            )
    lines.append(f"\ntotal {summary['total_s']:.0f} s; final policy {summary['final_policy']}")
    return "\n".join(lines)
