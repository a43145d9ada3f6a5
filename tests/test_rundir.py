"""Run dirs a rerun can trust (seal_runner/rundir.py, seal_runner/children.py).

- the stored config: result-neutral keys are ignored, a changed key is refused naming its old and
  new value, `resume=force` proceeds and is recorded, a dir without results takes the new config;
- the lock: a second locker is refused naming the holder's pid and host, a SIGKILLed holder leaves
  no lock, a forked child does not keep it;
- children: a child of a SIGKILLed parent dies with it (spawn and fork), and one whose parent died
  before it could ask kills itself.

These load no model. Two tests start a real `seal-run`: a tiny random model refused and then forced
with another `lora.lr`, and SmolLM2 under vLLM SIGKILLed once its engine core runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import SEAL_RUN, seal_run, seal_run_error
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from seal_runner import rundir
from seal_runner.children import ENV
from seal_runner.config import Resume, register_configs
from seal_runner.errors import InputError
from seal_runner.rundir import ABSENT, check_config, describe, differences, fingerprint, lock

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")

# --- the stored config ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    register_configs()
    with initialize_config_module(config_module="seal_runner.conf", version_base="1.3"):

        def make(*overrides: str, run_dir: str = "/tmp/seal-runner-test-run") -> DictConfig:
            cfg = compose(config_name="config", overrides=list(overrides))
            cfg.run_dir = run_dir  # resolves only inside a live Hydra run, which compose() does not start
            return cfg

        yield make


def run_dir_with_results(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "eval" / "results.jsonl").write_text('{"correct": true}\n')
    return run_dir


def test_result_neutral_keys_are_ignored(compose_cfg) -> None:
    base = fingerprint(compose_cfg())
    other = fingerprint(
        compose_cfg(
            "logger=none",
            "experiment_name=renamed",
            "resume=force",
            "model.cache_dir=/elsewhere",
            "inner.devices=[cpu,cpu]",
            "sft.num_processes=2",
            run_dir="/another/dir",
        )
    )
    assert differences(base, other) == {}
    assert not {"logger", "run_dir", "experiment_name", "resume"} & base.keys()
    assert "devices" not in base["inner"] and "num_processes" not in base["sft"]
    assert base["lora"]["lr"] > 0 and base["stage"] == "restem"  # the rest is kept


def test_changed_keys_are_refused_naming_old_and_new_values(compose_cfg, tmp_path) -> None:
    run_dir = run_dir_with_results(tmp_path)
    first = fingerprint(compose_cfg())
    check_config(run_dir, first, Resume.auto)
    stored = (run_dir / "run_config.json").read_bytes()
    changed = fingerprint(compose_cfg("lora.lr=1e-5", "seed=7", "lora.target_modules=[q_proj]"))
    with pytest.raises(InputError) as exc:
        check_config(run_dir, changed, Resume.auto)
    message = str(exc.value)
    assert f"lora.lr: {json.dumps(first['lora']['lr'])} -> 1e-05" in message
    assert "seed: 0 -> 7" in message
    assert f'lora.target_modules: {json.dumps(first["lora"]["target_modules"])} -> ["q_proj"]' in message
    assert "resume=force" in message and str(run_dir) in message
    assert (run_dir / "run_config.json").read_bytes() == stored


def test_differences_name_nested_added_and_removed_keys() -> None:
    changes = differences({"a": {"b": 1, "c": 2}, "d": "x"}, {"a": {"b": 1, "e": 3}, "d": "y"})
    assert changes == {"a.c": (2, ABSENT), "a.e": (ABSENT, 3), "d": ("x", "y")}
    assert describe(changes) == 'a.c: 2 -> <absent>; a.e: <absent> -> 3; d: "x" -> "y"'


def test_an_option_added_since_the_run_started_is_no_change_at_its_default(compose_cfg, tmp_path) -> None:
    """A run dir made before seal-runner gained `restem.heldout_likelihood` resumes while the new key
    sits at its schema default (the old behaviour); set otherwise, it is a change like any other."""
    run_dir = run_dir_with_results(tmp_path)
    old = fingerprint(compose_cfg())
    del old["restem"]["heldout_likelihood"], old["domain"]["drop_cut_line"]
    check_config(run_dir, old, Resume.auto)
    check_config(run_dir, fingerprint(compose_cfg()), Resume.auto)  # both at their defaults
    with pytest.raises(InputError, match=r"restem.heldout_likelihood: <absent> -> true"):
        check_config(run_dir, fingerprint(compose_cfg("restem.heldout_likelihood=true")), Resume.auto)
    # a preset's value that is not the schema default is a change too
    assert differences({"lora": {}}, {"lora": {"rank": 16}}) == {"lora.rank": (ABSENT, 16)}
    assert differences({"lora": {}}, {"lora": {"rank": 32}}) == {}


def test_top_level_options_added_since_the_run_started_are_no_change_at_their_default(
    compose_cfg, tmp_path
) -> None:
    """Keys outside the config groups (`evaluate.*`, a new `selfedit_sources` entry) are checked
    against the top-level schema: an evaluate run dir from before they existed resumes."""
    run_dir = run_dir_with_results(tmp_path)
    old = fingerprint(compose_cfg("stage=evaluate"))
    del old["evaluate"], old["selfedit_sources"]["policy_on_base"]
    check_config(run_dir, old, Resume.auto)
    check_config(run_dir, fingerprint(compose_cfg("stage=evaluate")), Resume.auto)
    with pytest.raises(InputError, match=r"differing keys: evaluate.samples: <absent> -> 4\. "):
        check_config(run_dir, fingerprint(compose_cfg("stage=evaluate", "evaluate.samples=4")), Resume.auto)


def test_an_option_whose_default_changed_the_behaviour_refuses_old_run_dirs(compose_cfg, tmp_path) -> None:
    """ARC run dirs made before `domain.test_inputs` hold one task per test input (`split`): under the
    new default `per_task` they are refused naming the option, with `split` they resume."""
    run_dir = run_dir_with_results(tmp_path)
    old = fingerprint(compose_cfg("experiment=demo/arc_cpu"))
    del old["domain"]["test_inputs"]
    check_config(run_dir, old, Resume.auto)
    with pytest.raises(InputError) as exc:
        check_config(run_dir, fingerprint(compose_cfg("experiment=demo/arc_cpu")), Resume.auto)
    assert 'domain.test_inputs: <absent> (made before the option: "split") -> "per_task"' in str(exc.value)
    check_config(
        run_dir, fingerprint(compose_cfg("experiment=demo/arc_cpu", "domain.test_inputs=split")), Resume.auto
    )
    check_config(run_dir, fingerprint(compose_cfg("experiment=demo/arc_cpu")), Resume.force)
    (override,) = json.loads((run_dir / "run_config.json").read_text())["overrides"]
    assert override["changes"] == {"domain.test_inputs": {"old": "split", "new": "per_task"}}


def test_an_arc_run_dir_from_stage_arc_resumes_under_stage_evaluate(compose_cfg, tmp_path) -> None:
    """`stage=arc` became ARC's `stage=evaluate` with the same records: a run dir stored as stage=arc
    resumes under the preset without `resume=force`; a knowledge-only change is still refused."""
    run_dir = run_dir_with_results(tmp_path)
    old = fingerprint(compose_cfg("experiment=demo/arc_cpu"))
    old["stage"] = "arc"
    check_config(run_dir, old, Resume.auto)
    check_config(run_dir, fingerprint(compose_cfg("experiment=demo/arc_cpu")), Resume.auto)
    with pytest.raises(InputError, match=r'stage: "evaluate" -> "restem"'):
        check_config(
            run_dir, fingerprint(compose_cfg("experiment=demo/arc_cpu", "stage=restem")), Resume.auto
        )


def test_force_proceeds_logs_and_records_the_override(compose_cfg, tmp_path, caplog) -> None:
    run_dir = run_dir_with_results(tmp_path)
    first, changed = fingerprint(compose_cfg()), fingerprint(compose_cfg("lora.lr=1e-5"))
    check_config(run_dir, first, Resume.auto)
    with caplog.at_level(logging.WARNING):
        check_config(run_dir, changed, Resume.force)
    assert "resume=force" in caplog.text and "lora.lr" in caplog.text
    stored = json.loads((run_dir / "run_config.json").read_text())
    assert stored["config"] == changed
    (override,) = stored["overrides"]
    assert override["changes"] == {"lora.lr": {"old": first["lora"]["lr"], "new": 1e-5}}
    check_config(run_dir, changed, Resume.auto)  # the forced config is now the stored one
    with pytest.raises(InputError, match="lora.lr"):
        check_config(run_dir, first, Resume.auto)


def test_identical_rerun_leaves_the_stored_config_untouched(compose_cfg, tmp_path) -> None:
    run_dir = run_dir_with_results(tmp_path)
    check_config(run_dir, fingerprint(compose_cfg()), Resume.auto)
    path = run_dir / "run_config.json"
    before = path.read_bytes(), path.stat().st_mtime_ns
    check_config(run_dir, fingerprint(compose_cfg("logger=none")), Resume.auto)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_a_dir_without_results_takes_the_new_config(compose_cfg, tmp_path) -> None:
    """A start that failed before its first record (a missing model, no memory) can be fixed and rerun."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("lora: {}\n")
    (run_dir / "seal-run.log").write_text("started\n")
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "libraries.log").write_text("[vllm][WARNING] - Triton is not installed\n")
    check_config(run_dir, fingerprint(compose_cfg("model.name_or_path=/no/such/model")), Resume.auto)
    fixed = fingerprint(compose_cfg())
    check_config(run_dir, fixed, Resume.auto)
    assert json.loads((run_dir / "run_config.json").read_text()) == {"config": fixed, "overrides": []}


def test_resume_is_a_closed_choice(compose_cfg) -> None:
    assert compose_cfg().resume is Resume.auto and compose_cfg("resume=force").resume is Resume.force
    with pytest.raises(Exception) as exc:
        compose_cfg("resume=forse")
    text, cause = [], exc.value
    while cause is not None:
        text.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    assert "resume" in "\n".join(text) and "auto, force" in "\n".join(text)


# --- the lock -------------------------------------------------------------------------------------

HOLD_LOCK = "import sys, time; from pathlib import Path; from seal_runner.rundir import lock; " \
    "lock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(600)"  # fmt: skip


def release(run_dir: Path) -> None:
    """What this process's exit would do: close its lock."""
    os.close(rundir._held.pop(run_dir.resolve()))


def test_second_locker_is_refused_naming_pid_and_host_and_a_killed_holder_leaves_no_lock(tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError) as exc:
            lock(run_dir)
        assert f"pid {holder.pid} on host {socket.gethostname()}" in str(exc.value)
        assert "in use by another seal-run" in str(exc.value)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs
        holder.wait()
    lock(run_dir)
    assert (run_dir / ".lock").read_text() == f"pid {os.getpid()} on host {socket.gethostname()}\n"
    lock(run_dir)  # this process holds it already: a no-op
    release(run_dir)


def test_a_forked_child_does_not_keep_the_lock(tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock(run_dir)
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    try:
        release(run_dir)  # the run is gone; its forked child lives on
        taker = subprocess.run(
            [sys.executable, "-c", HOLD_LOCK.replace("time.sleep(600)", "0"), str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taker.returncode == 0 and "locked" in taker.stdout, taker.stderr
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# --- children -------------------------------------------------------------------------------------

PARENT = """
import multiprocessing as mp, sys, time
from seal_runner.children import adopt

def child(ready):
    open(ready, "w").write("ready")
    time.sleep(600)

if __name__ == "__main__":
    adopt()
    worker = mp.get_context(sys.argv[1]).Process(target=child, args=(sys.argv[2],))
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(600)
"""


def gone(procs: list[psutil.Process], timeout: float) -> bool:
    """Every process exited (or is a zombie waiting for init to reap it) within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                continue
        if not alive:
            return True
        time.sleep(0.1)
    return False


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != ENV}


@linux_only
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_children_die_with_a_sigkilled_parent(tmp_path, method: str) -> None:
    script, ready = tmp_path / "parent.py", tmp_path / "ready"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), method, str(ready)], stdout=subprocess.PIPE, text=True, env=clean_env()
    )
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child never started"
        descendants = psutil.Process(parent.pid).children(recursive=True)  # child + resource tracker
        assert child in descendants
    finally:
        parent.kill()
        parent.wait()
    assert gone(descendants, timeout=5), [p for p in descendants if p.is_running()]


@linux_only
def test_a_child_whose_run_already_died_kills_itself() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    proc = subprocess.run(
        [sys.executable, "-c", "import seal_runner; print('alive')"],
        env={**clean_env(), ENV: str(dead.pid)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL and "alive" not in proc.stdout


# --- real runs ------------------------------------------------------------------------------------

# Without HYDRA_FULL_ERROR, as a user's shell; not a child of this process's run (children.ENV).
AS_A_USER = {"env": {"OMP_NUM_THREADS": "1"}, "unset": (ENV, "HYDRA_FULL_ERROR"), "timeout": 300}


@pytest.mark.integration
def test_rerun_with_another_lr_is_refused_before_any_work_and_forced(tiny_model_dir, tmp_path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "stage=evaluate",
        f"model.name_or_path={tiny_model_dir}",
        "engine=hf",
        "engine@qa_engine=hf",
        "logger=none",
        "domain.n_articles=1",
        "domain.qa_max_tokens=4",
        "conditions=[base]",
        f"hydra.run.dir={run_dir}",
    ]
    seal_run(*args, cwd=tmp_path, **AS_A_USER)
    results = (run_dir / "results.jsonl").read_bytes()
    lr = json.loads((run_dir / "run_config.json").read_text())["config"]["lora"]["lr"]

    out = seal_run_error(*args, "lora.lr=1e-5", cwd=tmp_path, **AS_A_USER)
    assert f"lora.lr: {json.dumps(lr)} -> 1e-05" in out, out
    assert "| model" not in out, "the model was loaded before the refusal"
    assert (run_dir / "results.jsonl").read_bytes() == results

    forced = seal_run(*args, "lora.lr=1e-5", "resume=force", cwd=tmp_path, **AS_A_USER)
    out = forced.stdout + forced.stderr
    assert "resume=force" in out and "lora.lr" in out
    (override,) = json.loads((run_dir / "run_config.json").read_text())["overrides"]
    assert override["changes"]["lora.lr"] == {"old": lr, "new": 1e-5}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.xdist_group("vllm")
@linux_only
def test_sigkilled_run_leaves_no_process_behind(smollm2_path, tmp_path) -> None:
    """vLLM's engine core and the multiprocessing resource tracker exit with a SIGKILLed `seal-run`
    (vLLM's own process layout, the default; `engine.in_process=true` starts no engine process)."""
    args = [
        "stage=evaluate",
        f"model.name_or_path={smollm2_path}",
        "engine=vllm",
        "engine.in_process=false",
        "engine@qa_engine=hf",
        "logger=none",
        "domain.n_articles=1",
        "conditions=[selfedit]",  # a row that samples: engines start when first used
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen([SEAL_RUN, *args], stdout=log, stderr=log, env=clean_env(), start_new_session=True)
    try:
        deadline, engine_core = time.monotonic() + 240, None
        while engine_core is None and run.poll() is None and time.monotonic() < deadline:
            for p in psutil.Process(run.pid).children(recursive=True):
                try:
                    if "EngineCore" in p.name() + " ".join(p.cmdline()):
                        engine_core = p
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.5)
        assert engine_core is not None, (tmp_path / "run.log").read_text()[-3000:]
        descendants = psutil.Process(run.pid).children(recursive=True)
        os.kill(run.pid, signal.SIGKILL)  # the run alone, as the OOM killer would, not its group
        run.wait()
        assert gone(descendants, timeout=10), [(p.pid, p.name()) for p in descendants if p.is_running()]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # whatever survived a failed assertion
        run.wait()
        log.close()
