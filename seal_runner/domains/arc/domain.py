"""The ARC domain for SEAL's outer loop (paper §3): few-shot tasks in, test-time-training plans out,
reward = solved.

Contexts are ARC tasks (`domain.source`: ARC-AGI files or the procedural generator). A self-edit is a
JSON plan for test-time training (augmentation groups, loss strategy, learning rate, epochs); its
reward (`restem.reward=solved`) is 1 when the model adapted by that training solves the task pass@2,
else 0; a task with several test inputs is one context, solved only when every input is right, unless
`domain.test_inputs=split` makes each input a task of its own. With `restem.selection=all_positive`
the outer loop (stages/restem.py) is the paper's behaviour cloning: every solved (prompt -> self-edit)
pair is kept and the policy SFT'd on them (`restem=arc_bc` sets both). Every round trains on all
training tasks, `domain.train_samples_per_task` self-edits each; a policy is evaluated on the
evaluation tasks with `domain.eval_samples_per_task` self-edits each.

`condition` scores one way of adapting a policy on a set of tasks: `icl` (no adaptation), `selfedit`
(one test-time training per sampled self-edit) or `oracle` (one fixed plan, `domain.oracle`). The
held-out evaluation is `selfedit` on the evaluation tasks; stage=evaluate builds Table 1 from all three
(domains/arc/table1.py).
Every condition writes self_edits.jsonl, updates.jsonl, adapters/, results.jsonl and summary.json
under its dir, each step skipping what is already there.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from seal_runner.choices import ArcSource, Reward, RewardBaseline, SelfEditHeader, TestInputs
from seal_runner.domains.arc import table1
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
from seal_runner.inner import update_key
from seal_runner.records import ResumableLog, derive_seed, read_jsonl, write_json
from seal_runner.stages.common import Engines, RunContext
from seal_runner.stats import bootstrap_mean_ci


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
    split_tests = d.test_inputs == TestInputs.split
    return load_tasks(
        challenges, solutions, task_ids=None if ids is None else list(ids), split_tests=split_tests
    )


class ArcDomain:
    """`domain._target_` of conf/domain/arc.yaml. Its keys also arrive as keyword arguments (how
    `build_domain` builds every domain); the pipeline steps (pipeline.py) read them, and the shared
    groups (sampling, selfedit_prompt, lora, inner), from the run's config."""

    objective_name = "success_rate"

    def __init__(self, run: RunContext, restem: DictConfig, **settings) -> None:
        if restem.reward != Reward.solved:
            raise InputError(
                f"restem.reward={restem.reward} does not apply to domain=arc, whose reward is `solved` "
                "(the adapted model solves its task); use restem=arc_bc or restem.reward=solved"
            )
        if restem.reward_baseline != RewardBaseline.no_update:
            raise InputError(
                f"restem.reward_baseline={restem.reward_baseline} does not apply to domain=arc: a task "
                "is solved or not, with no update on the context alone to compare; use no_update"
            )
        self.run, self.cfg = run, run.cfg
        d = run.cfg.domain
        self.encoder = TTTEncoder(
            run.tokenizer, grid_format(d.grid_format), dict(d.chat_template_kwargs), d.token_layout
        )
        if run.cfg.selfedit_prompt.header == SelfEditHeader.reference:
            self.encoder.chat.check_llama3_markup()  # before any engine starts
        self._tasks: dict[str, list[ARCTask]] = {}

    def tasks(self, split: str) -> list[ARCTask]:
        """`train` or `eval` tasks, loaded once."""
        if split not in self._tasks:
            self._tasks[split] = load_split(self.cfg, split)
        return self._tasks[split]

    def heldout(self) -> list[ARCTask]:
        return self.tasks("eval")

    def training_contexts(self, round: int) -> list[ARCTask]:
        return self.tasks("train")  # every round: all training tasks (the paper runs one)

    def sample(self, engine, contexts: list[ARCTask], out: Path) -> dict[tuple[str, int], dict]:
        return self._sample(engine, contexts, out, self.cfg.domain.train_samples_per_task)

    def score(
        self, engines: Engines, policy: str, contexts: list[ARCTask], edits: dict, out: Path
    ) -> list[dict]:
        """Reward 1.0 when the self-edit's test-time training on `policy` solves its task, else 0.0
        (a failed update too); the round's condition summary goes to `out/summary.json` as well."""
        samples = self.cfg.domain.train_samples_per_task
        _, results = self._score_edits(engines, policy, contexts, edits, out, "selfedit", samples)
        position = {t.task_id: i for i, t in enumerate(contexts)}
        return [
            {
                "context": position[tid],  # selection orders the kept pairs by it: the tasks' order
                "sample": sample,
                "task": tid,
                "prompt": edit["prompt"],
                "completion": edit["text"],
                "reward": float(results.get(f"{tid}/s{sample}", {}).get("solved", False)),
                "num_tokens": edit["num_tokens"],
            }
            for (tid, sample), edit in edits.items()
        ]

    def round_fields(self, edits: dict, candidates: list[dict]) -> dict:
        return {"selfedits": len(edits), "solved": sum(c["reward"] > 0 for c in candidates)}

    def evaluate(self, engines: Engines, policy: str, heldout: list[ARCTask], out: Path) -> dict:
        """The `selfedit` condition: `policy` writes the plans and is the base of their training."""
        samples = self.cfg.domain.eval_samples_per_task
        return self.condition(engines, policy, heldout, out, "selfedit", samples)

    def round_metrics(self, record: dict) -> dict[str, float]:
        return {"heldout/success_rate": record["heldout"]["success_rate"]}

    def report(self, heldout: list[ARCTask], rounds: list[dict]) -> dict:
        return {
            "eval_tasks": len(heldout),
            "train_tasks": len(self.tasks("train")),
            "objective": rounds[-1]["heldout"]["success_rate"],
        }

    def plots(self, summary: dict, run_dir: Path) -> dict[str, str]:
        return {}

    def format_table(self, summary: dict) -> str:
        lines = [
            f"\n{summary['experiment']}: few-shot ARC, success rate on {summary['eval_tasks']} evaluation "
            f"tasks per policy ({summary['train_tasks']} training tasks)"
        ]
        for r in summary["rounds"]:
            h = r["heldout"]
            kept = f"; kept {r['chosen']} solved self-edits" if "chosen" in r else ""
            lines.append(
                f"round {r['round']}: {100 * h['success_rate']:.1f}% ({h['solved']} / {h['pairs']}){kept}"
            )
        return "\n".join(lines)

    # stage=evaluate: the paper's Table 1 (domains/arc/table1.py), which builds the domain itself
    check_conditions = staticmethod(table1.check_conditions)
    evaluate_conditions = staticmethod(table1.measure)
    format_conditions = staticmethod(table1.format_table)

    def condition(
        self, engines: Engines, policy: str, tasks: list[ARCTask], out: Path, mode: str, samples: int = 1
    ) -> dict:
        """Score one way of adapting `policy` (`mode` icl | selfedit | oracle) on `tasks` under `out`."""
        edits: dict[tuple[str, int], dict] = {}
        if mode == "selfedit":
            edits = self._sample(engines.sampler, tasks, out, samples)
        elif mode == "oracle":
            oracle = {"edit": OmegaConf.to_container(self.cfg.domain.oracle), "prompt": None, "text": None}
            edits = {(t.task_id, 0): oracle for t in tasks}
        summary, _ = self._score_edits(engines, policy, tasks, edits, out, mode, samples)
        return summary

    def _tag(self, out: Path) -> str:
        """The dir relative to the run: seeds, adapter names and tracker keys derive from it."""
        return str(out.relative_to(self.run.run_dir))

    def _sample(self, engine, tasks: list[ARCTask], out: Path, samples: int) -> dict[tuple[str, int], dict]:
        path = out / "self_edits.jsonl"
        return sample_selfedits(self.cfg, engine, self.encoder, tasks, samples, path, self._tag(out))

    def _score_edits(
        self,
        engines: Engines,
        policy: str,
        tasks: list[ARCTask],
        edits: dict,
        out: Path,
        mode: str,
        samples: int,
    ) -> tuple[dict, dict[str, dict]]:
        """Test-time training per edit (none for icl), answers and pass@2: the condition's summary
        (also written to `out/summary.json` and logged) and its results by unit key."""
        cfg, tag = self.cfg, self._tag(out)
        by_id = {t.task_id: t for t in tasks}
        expected = len(tasks) * (1 if mode in ("icl", "oracle") else samples)
        if mode == "icl":
            units = [(t.task_id, t, None) for t in tasks]
            updates: dict[str, dict] = {}
        else:
            updates = ResumableLog(out / "updates.jsonl", key=update_key).done
            pending = []
            for (tid, sample), record in edits.items():
                key = f"{tid}/s{sample}"
                if key in updates:
                    continue
                edit = fixed_edit(cfg.domain.oracle) if mode == "oracle" else edit_from_record(record)
                seed = derive_seed(cfg.seed, tag, tid, sample)
                cap = step_cap_for(cfg, mode == "oracle")
                pending.append(build_unit(cfg, self.encoder, key, by_id[tid], edit, seed, cap))
            if pending:
                run = self.run
                updates = train_units(
                    cfg, policy, run.tokenizer, pending, out / "updates.jsonl", out / "adapters", run.tracker
                )
            units = [
                (key, by_id[u["task"]], LoraAdapter(f"{tag}/{key}", u["adapter"]))
                for key, u in updates.items()
                if u["adapter"]
            ]
        results = answer_units(cfg, engines.qa, self.encoder, units, out / "results.jsonl")
        summary = condition_summary(results, updates, edits, [t.task_id for t in tasks], expected, out)
        write_json(out / "summary.json", summary)
        self.run.tracker.log({f"{tag}/success_rate": summary["success_rate"]})
        return summary, results


def condition_summary(
    results: dict[str, dict],
    updates: dict[str, dict],
    edits: dict,
    tasks: list[str],
    expected: int,
    out: Path,
) -> dict:
    """Success rate = solved pairs / expected pairs: self-edits never sampled validly (budget spent)
    and failed inner updates count as unsolved pairs. Its 95% CI bootstraps over `tasks` (source tasks
    unless `domain.test_inputs=split`), the sampled unit (the self-edits of one task share its
    difficulty), each task weighing its `expected / len(tasks)` pairs, unsolved when unscored."""
    attempts = read_jsonl(out / "self_edits.jsonl")
    solved = sum(r["solved"] for r in results.values())
    per_task: dict[str, int] = {}
    for r in results.values():
        per_task[r["task"]] = per_task.get(r["task"], 0) + int(r["solved"])
    pairs_per_task = expected / max(1, len(tasks))
    _, low, high = bootstrap_mean_ci([per_task.get(t, 0) / pairs_per_task for t in tasks])
    return {
        "pairs": expected,
        "scored": len(results),
        "solved": solved,
        "success_rate": solved / max(1, expected),
        "ci_low": low,
        "ci_high": high,
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
