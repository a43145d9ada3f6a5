"""A quiet console: libraries' records go to `<run dir>/logs/`, seal_runner's stay on the console.

Logging is configured the way `seal-run` does it, without a model: Hydra's own `configure_log` applies
the composed `hydra/job_logging`, then `logs.share()` (what `setup_run` calls)."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log
from omegaconf import open_dict

from seal_runner import logs
from seal_runner.config import register_configs

LIBRARIES = ("vllm", "transformers", "fakelib")  # loggers these tests write to or give handlers


@pytest.fixture
def quiet(tmp_path, capsys, monkeypatch) -> Iterator[Callable[..., Path]]:
    """`quiet(*overrides)` configures logging for a run in `tmp_path` and returns its logs dir;
    everything global it touches (root handlers, loggers, warnings capture, env, Hydra) is restored."""
    for name in (logs.ENV, logs.VLLM_ENV, logs.STDERR_ENV):
        monkeypatch.setenv(name, "")  # recorded, so that what share() sets is undone
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # A library imported earlier in this process (vLLM by another test of the same xdist worker) has
    # configured its own logger (a stdout handler, propagate=False); a run configures logging first.
    libraries = {name: logging.getLogger(name) for name in LIBRARIES}
    saved = {name: (lg.handlers[:], lg.propagate, lg.level) for name, lg in libraries.items()}
    for lg in libraries.values():
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
    register_configs()
    from transformers.utils import logging as hf_logging

    bars_shown = hf_logging.is_progress_bar_enabled()

    def configure(*overrides: str) -> Path:
        with initialize_config_module(config_module="seal_runner.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)  # what a live run sets
        HydraConfig.instance().set_config(cfg)
        configure_log(cfg.hydra.job_logging, cfg.hydra.verbose)  # what Hydra's run_job does
        assert logs.share() == tmp_path / "logs" / "logging.json"
        return tmp_path / "logs"

    yield configure
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in (*LIBRARIES, logs.OWN):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    for name, (library_handlers, propagate, library_level) in saved.items():
        libraries[name].handlers[:] = library_handlers
        libraries[name].propagate = propagate
        libraries[name].setLevel(library_level)
    logging.captureWarnings(False)
    HydraConfig.instance().cfg = None
    if bars_shown:
        hf_logging.enable_progress_bar()


def test_the_default_run_logs_quietly() -> None:
    register_configs()
    with initialize_config_module(config_module="seal_runner.conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/job_logging"] == "quiet"


def test_library_records_go_to_their_file_and_seal_runner_stays_on_the_console(quiet, capsys) -> None:
    log_dir = quiet()
    logging.getLogger("vllm.triton_utils.importing").warning("Triton is installed, but no CPU backend")
    logging.getLogger("seal_runner.stages.common").info("run dir x | model y | stage restem")
    logging.getLogger("seal_runner.domains.knowledge.pipeline").warning("4 self-edits are empty")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`reduce_op` is deprecated", FutureWarning, stacklevel=1)

    console = capsys.readouterr()
    assert "Triton" not in console.out + console.err and "reduce_op" not in console.out + console.err
    assert "run dir x | model y | stage restem" in console.out and "4 self-edits are empty" in console.out
    libraries = (log_dir / "libraries.log").read_text()
    assert "[vllm.triton_utils.importing][WARNING] - Triton is installed" in libraries
    assert "[py.warnings][WARNING]" in libraries and "FutureWarning: `reduce_op` is deprecated" in libraries
    assert "seal_runner" not in libraries
    own = (log_dir / "seal_runner.log").read_text()
    assert "run dir x | model y | stage restem" in own and "4 self-edits are empty" in own
    assert "Triton" not in own


def test_a_library_error_still_reaches_the_console(quiet, capsys) -> None:
    """A failing library's last words explain the traceback that follows them."""
    log_dir = quiet()
    logging.getLogger("vllm.v1.engine.core").error("EngineCore failed to start")
    assert "EngineCore failed to start" in capsys.readouterr().out
    assert "EngineCore failed to start" in (log_dir / "libraries.log").read_text()


def test_a_library_with_its_own_stderr_handler_is_taken_off_the_console(quiet, capsys) -> None:
    """transformers and torch attach stream handlers of their own at import and do not propagate."""
    own_handler = logging.StreamHandler(sys.stderr)
    library = logging.getLogger("fakelib")
    library.addHandler(own_handler)
    library.propagate = False
    log_dir = quiet()
    library.warning("generation flags are not valid")
    assert "generation flags" not in capsys.readouterr().err
    assert "[fakelib][WARNING] - generation flags are not valid" in (log_dir / "libraries.log").read_text()
    config = json.loads((log_dir / "logging.json").read_text())
    assert config["loggers"]["fakelib"] == {"propagate": True}  # so vLLM's processes do the same


def test_vllm_processes_apply_the_shared_config(quiet, capsys) -> None:
    """vLLM 0.32 (vllm/logger.py, `_configure_vllm_root_logger`) replaces its default config (a
    handler printing the `vllm` logger to stdout) with the JSON at VLLM_LOGGING_CONFIG_PATH, read
    through `dictConfig`, in the main process and in each engine core and worker it starts."""
    log_dir = quiet()
    path = Path(os.environ[logs.VLLM_ENV])
    assert path == log_dir / "logging.json" and os.environ[logs.ENV] == str(path)
    logging.config.dictConfig(json.loads(path.read_text()))  # what vLLM does with it
    logging.getLogger("vllm.engine.arg_utils").warning(
        "This model does not support disabling chunked prefill"
    )
    assert "chunked prefill" not in capsys.readouterr().out
    assert "chunked prefill" in (log_dir / "libraries.log").read_text()


def test_vllm_left_unconfigured_gets_no_config_file(quiet, monkeypatch) -> None:
    """With VLLM_CONFIGURE_LOGGING=0 vLLM raises on a config file; its loggers then propagate to ours."""
    monkeypatch.setenv("VLLM_CONFIGURE_LOGGING", "0")
    log_dir = quiet()
    assert os.environ[logs.VLLM_ENV] == "" and os.environ[logs.ENV] == str(log_dir / "logging.json")


def test_a_spawned_child_logs_the_way_the_run_does(quiet, tmp_path) -> None:
    """Spawned children (vLLM's engine core, inner workers) import seal_runner first; they log before
    vLLM configures anything (its Triton notice at import)."""
    log_dir = quiet()
    code = (
        "import logging, warnings, seal_runner; "
        "logging.getLogger('vllm.triton_utils.importing').warning('child: Triton disabled'); "
        "logging.getLogger('seal_runner.inner_pool').warning('child: own warning'); "
        "warnings.warn('child: deprecated', FutureWarning)"
    )
    env = {**os.environ, logs.ENV: str(log_dir / "logging.json")}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert child.returncode == 0, child.stderr
    assert "child: own warning" in child.stdout
    assert "Triton" not in child.stdout + child.stderr and "deprecated" not in child.stdout + child.stderr
    libraries = (log_dir / "libraries.log").read_text()
    assert "child: Triton disabled" in libraries and "child: deprecated" in libraries
    assert "child: own warning" in (log_dir / "seal_runner.log").read_text()


ENGINE_START = """
import os, subprocess, sys
from seal_runner import logs
with logs.stderr_to_library_log():
    os.write(2, b"NUMA binding: a C++ notice\\n")
    print("Loading safetensors checkpoint shards", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "import os; os.write(2, b'an engine core notice')"], check=True)
os.write(2, b"after the engine start\\n")
"""


def test_what_an_engine_start_prints_past_logging_goes_to_the_library_log(quiet) -> None:
    """vLLM-CPU's C++ NUMA notice and vLLM's loading bars write to fd 2 directly, and an engine core
    started meanwhile inherits it; with `hydra.verbose=true` they stay on the terminal."""
    log_dir = quiet()
    child = subprocess.run(
        [sys.executable, "-c", ENGINE_START], env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert child.stderr == "after the engine start\n"
    libraries = (log_dir / "libraries.log").read_text()
    assert (
        "NUMA binding" in libraries and "Loading safetensors" in libraries and "an engine core" in libraries
    )

    quiet("hydra.verbose=true")
    child = subprocess.run(
        [sys.executable, "-c", ENGINE_START], env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert "NUMA binding" in child.stderr and "an engine core notice" in child.stderr


def test_model_load_bars_hide_unless_verbose_and_download_bars_stay(quiet) -> None:
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    quiet()
    assert not hf_logging.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
    hf_logging.enable_progress_bar()
    quiet("hydra.verbose=true")
    assert hf_logging.is_progress_bar_enabled()


def test_verbose_names_bring_those_libraries_back(quiet, capsys) -> None:
    log_dir = quiet("hydra.verbose=[vllm]")
    logging.getLogger("vllm.worker").debug("KV cache: 2 GiB")
    logging.getLogger("transformers.generation").warning("generation flags are not valid")
    console = capsys.readouterr().out
    assert "[vllm.worker][DEBUG] - KV cache: 2 GiB" in console and "generation flags" not in console
    assert "KV cache" in (log_dir / "libraries.log").read_text()
    assert json.loads((log_dir / "logging.json").read_text())["loggers"]["vllm"]["level"] == "DEBUG"


def test_verbose_true_brings_every_library_back(quiet, capsys) -> None:
    log_dir = quiet("hydra.verbose=true")
    logging.getLogger("transformers.generation").info("generation config loaded")
    assert "generation config loaded" in capsys.readouterr().out
    assert "generation config loaded" in (log_dir / "libraries.log").read_text()
    assert json.loads((log_dir / "logging.json").read_text())["root"]["level"] == "DEBUG"


def test_verbose_true_lifts_the_level_a_library_set_for_itself(quiet, capsys) -> None:
    """transformers gives its logger a stream handler and WARNING at import; `hydra.verbose=true`
    still shows its INFO records, in this process and in the shared file."""
    library = logging.getLogger("fakelib")
    library.addHandler(logging.StreamHandler(sys.stderr))
    library.setLevel(logging.WARNING)
    log_dir = quiet("hydra.verbose=true")
    library.info("generation config loaded")
    assert "generation config loaded" in capsys.readouterr().out
    assert json.loads((log_dir / "logging.json").read_text())["loggers"]["fakelib"]["level"] == "NOTSET"


def test_hydra_default_job_logging_is_shared_as_it_is(quiet, capsys) -> None:
    """`hydra/job_logging=default` (Hydra's stock: everything on the console) reaches vLLM unchanged."""
    log_dir = quiet("hydra/job_logging=default")
    logging.getLogger("vllm.platforms").warning("Triton is not installed")
    assert "Triton is not installed" in capsys.readouterr().out
    assert not (log_dir / "libraries.log").exists()
