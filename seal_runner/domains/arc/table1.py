"""The ARC domain's evaluation table (paper §3, Table 1), which `stage=evaluate` runs
(`ArcDomain.evaluate_conditions`): self-edits that configure test-time training.

Conditions, all scored on the evaluation tasks as the fraction of (task, self-edit) pairs solved, a
task with several test inputs only when all are (`domain.test_inputs`; seal_runner/domains/arc/domain.py
scores each one):
  icl       policy_0, no adaptation, the same augmented-query voting pipeline;
  ttt_base  policy_0 writes `eval_samples_per_task` JSON self-edits per task, each one trains a
            fresh LoRA on policy_0 (test-time training) and the adapted model is scored pass@2;
  seal      the same after `restem.rounds` rounds of behaviour cloning, each one round of the shared
            outer loop (stages/restem.py `improve`) with the ARC domain: the policy samples
            `train_samples_per_task` self-edits per training task, reward = solved, `all_positive`
            keeps every solved (prompt -> self-edit), SFT (`sft=arc_bc`) and merge; the current
            policy is both the self-edit generator and the base of test-time training;
  oracle    one fixed configuration per task (`domain.oracle`, all augmentations by default).
Layout: eval/<condition>/ and round_<r>/ hold self_edits.jsonl (every attempt), updates.jsonl,
adapters/, results.jsonl and summary.json; round_<r>/ also rewards.json (one candidate per self-edit),
reward_seconds.json, sft.json (the kept pairs) and policy/ (the BC update); the run's summary.json
(written by the stage) and table.md the Table 1 rows (success rate with a bootstrap 95% CI over
tasks), table1.png the same rows as bars (also logged to W&B). Every step skips what is on disk, so a
rerun is free.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig

from seal_runner.domains.knowledge.report import plot_table2
from seal_runner.errors import InputError
from seal_runner.records import write_json
from seal_runner.stages.common import RunContext, build_domain, versions
from seal_runner.stages.restem import improve, round_learner, writer_and_learner

CONDITIONS = ("icl", "ttt_base", "seal", "oracle")
TABLE_ROWS = {
    "icl": "ICL",
    "ttt_base": "TTT + Self-Edit (w/o prior RL)",
    "seal": "SEAL",
    "oracle": "Oracle TTT",
}
PAPER = {"icl": 0.0, "ttt_base": 20.0, "seal": 72.5, "oracle": 100.0}


def check_conditions(cfg: DictConfig) -> None:
    """Fail before any model load when a row of `conditions` is not a Table 1 condition."""
    unknown = [name for name in cfg.conditions if name not in CONDITIONS]
    if unknown:
        raise InputError(
            f"conditions: {unknown} are not ARC conditions; choose from {', '.join(CONDITIONS)} "
            "(experiment=demo/arc_cpu runs all four)"
        )


def measure(ctx: RunContext, started: float) -> dict:
    """The run's ARC domain (`domain._target_`) measures every condition of `conditions` on the
    evaluation tasks, resumable; "seal" first runs `restem.rounds` behaviour-cloning rounds through the
    shared outer loop (`improve`). Returns the summary (plots drawn, W&B fed); `stage=evaluate` writes
    it and prints `format_table`."""
    cfg = ctx.cfg
    domain = build_domain(cfg, ctx)
    samples = cfg.domain.eval_samples_per_task
    eval_tasks = domain.heldout()
    train_tasks = domain.training_contexts(0) if "seal" in cfg.conditions else []
    write_json(
        ctx.run_dir / "tasks.json",
        {"train": [t.task_id for t in train_tasks], "eval": [t.task_id for t in eval_tasks]},
    )
    policy = ctx.model_path
    conditions: dict[str, dict] = {}
    timings: dict[str, float] = {}
    engines = ctx.engines_for(policy)
    for name, mode in (("icl", "icl"), ("ttt_base", "selfedit"), ("oracle", "oracle")):
        if name in cfg.conditions:
            t0 = time.perf_counter()
            out = ctx.run_dir / "eval" / name
            conditions[name] = domain.condition(engines, policy, eval_tasks, out, mode, samples)
            timings[name] = time.perf_counter() - t0
    rounds = []
    if "seal" in cfg.conditions:
        for r in range(cfg.restem.rounds):
            t0 = time.perf_counter()
            record = {"round": r}
            learner = round_learner(ctx, policy)
            if learner != policy:  # the policy's engines serve both roles unless the learner is fixed
                engines.close()
                engines = writer_and_learner(ctx, policy, learner)
            policy = improve(ctx, domain, engines, policy, learner, r, record)  # closes `engines`
            engines = ctx.engines_for(policy)
            train = json.loads((ctx.run_dir / f"round_{r}" / "summary.json").read_text())
            record |= {"train": train, "policy": policy, "seconds": time.perf_counter() - t0}
            rounds.append(record)
            bc = record["sft"]["examples"] if "sft" in record else 0
            ctx.tracker.log({"round": r, "train/success_rate": train["success_rate"], "bc/examples": bc})
        t0 = time.perf_counter()
        out = ctx.run_dir / "eval" / "seal"
        conditions["seal"] = domain.evaluate(engines, policy, eval_tasks, out)
        timings["seal"] = time.perf_counter() - t0
    engines.close()
    summary = {
        "experiment": cfg.experiment_name,
        "stage": "evaluate",
        "table": "table1",
        "model": cfg.model.name_or_path,
        "seed": cfg.seed,
        "eval_tasks": len(eval_tasks),
        "train_tasks": len(train_tasks),
        "conditions": {k: conditions[k] | {"label": TABLE_ROWS[k]} for k in CONDITIONS if k in conditions},
        "rounds": rounds,
        "final_policy": policy,
        "condition_seconds": timings,
        "total_s": time.perf_counter() - started,
        "versions": versions(),
        "objective": conditions.get("seal", next(iter(conditions.values()), {})).get("success_rate"),
    }
    summary["plots"] = plots(summary, ctx.run_dir)
    (ctx.run_dir / "table.md").write_text(format_table(summary) + "\n")
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
    return summary


def plots(summary: dict, run_dir: Path) -> dict[str, str]:
    """`table1.png`: one bar per Table 1 row, its success rate with the bootstrap 95% CI over tasks."""
    rows = [
        {**summary["conditions"][key], "row": TABLE_ROWS[key]}
        for key in CONDITIONS
        if key in summary["conditions"]
    ]
    title = f"{summary['experiment']}: Table 1 ({summary['eval_tasks']} evaluation tasks)"
    xlabel = "success rate over (task, self-edit) pairs (%), 95% CI over tasks"
    return {"table1": str(plot_table2(rows, run_dir / "table1.png", title, "success_rate", xlabel))}


def format_table(summary: dict) -> str:
    """The paper's Table 1 layout: one row per method, success rate over (task, self-edit) pairs with
    its bootstrap 95% CI over tasks."""
    lines = [
        f"\n{summary['experiment']}: few-shot ARC, {summary['eval_tasks']} evaluation tasks "
        f"({summary['train_tasks']} training tasks for RL)",
        "",
        f"| {'Method':<32} | {'Success Rate (%)':>16} | {'95% CI':>13} | {'solved / pairs':>14} "
        f"| {'paper (%)':>9} |",
        f"|{'-' * 34}|{'-' * 18}|{'-' * 15}|{'-' * 16}|{'-' * 11}|",
    ]
    for key in CONDITIONS:
        if key in summary["conditions"]:
            c = summary["conditions"][key]
            ci = f"[{100 * c['ci_low']:.1f}, {100 * c['ci_high']:.1f}]"
            lines.append(
                f"| {TABLE_ROWS[key]:<32} | {100 * c['success_rate']:>16.1f} | {ci:>13} | "
                f"{str(c['solved']) + ' / ' + str(c['pairs']):>14} | {PAPER[key]:>9.1f} |"
            )
    lines.append(
        f"\ntotal {summary['total_s']:.0f} s; final policy {summary['final_policy']}; "
        f"plots: {', '.join(summary['plots'].values())}"
    )
    return "\n".join(lines)
