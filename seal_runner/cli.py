"""`seal-run`: the single Hydra entry point. `stage=` picks the job; heavy imports wait until used."""

from __future__ import annotations

import importlib
import logging

import hydra
from omegaconf import DictConfig

from seal_runner.children import adopt
from seal_runner.config import register_configs
from seal_runner.errors import InputError

log = logging.getLogger(__name__)

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://seal_runner.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    # `stage` is a choices.Stage, checked at composition: a module under seal_runner.stages with `run(cfg)`.
    stage = importlib.import_module(f"seal_runner.stages.{cfg.stage}")
    adopt()  # the engine core and other children die with this process, even when it is SIGKILLed
    try:
        summary = stage.run(cfg)
    except InputError as exc:  # the user's input, named precisely: a message, not a traceback
        log.error("%s", exc)
        raise SystemExit(f"seal-run: {exc}") from None
    # Hydra sweepers (Optuna, Nevergrad) optimise the returned value.
    return summary.get("objective") if isinstance(summary, dict) else None


if __name__ == "__main__":
    main()
