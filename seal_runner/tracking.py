"""W&B logging (offline by default, never requires a login) behind a tiny interface.

The local JSON/JSONL files are the source of truth; W&B mirrors metrics and tables for browsing.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
_SECRET_KEY = re.compile(r"(api_key|token|secret|password)$", re.IGNORECASE)


def public_config(cfg: DictConfig) -> dict:
    """Resolved plain config (closed choices as their strings) with secret-looking values removed
    (`*_env` names are kept: they are variable names, not secrets)."""

    def scrub(node):
        if isinstance(node, dict):
            return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return scrub(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def default_group(cfg: DictConfig) -> str:
    """The W&B group when `logger.group` is unset: a multirun's sweep dir, so every job of one sweep
    (on any launcher: basic, joblib, submitit/SLURM) lands in one group; else the experiment name."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(HydraConfig.get().sweep.dir)[-128:]  # W&B caps group names at 128 characters
    return cfg.experiment_name


class Tracker:
    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.run = None
        logger = cfg.logger
        if logger.name != "wandb" or logger.mode == "disabled":
            return
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=logger.project,
            entity=logger.entity,
            group=logger.group or default_group(cfg),
            tags=list(logger.tags),
            mode=logger.mode,
            dir=str(run_dir),
            name=f"{cfg.experiment_name}-{run_dir.name}",
            config=public_config(cfg),
            reinit="finish_previous",
        )

    def log(self, metrics: dict, step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def table(self, name: str, rows: list[dict]) -> None:
        if self.run is None or not rows:
            return
        import wandb

        columns = list(rows[0])
        self.run.log({name: wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])})

    def image(self, name: str, path: str) -> None:
        if self.run is not None:
            import wandb

            self.run.log({name: wandb.Image(path)})

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
