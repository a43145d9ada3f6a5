"""`stage=evaluate`: the paper's evaluation table of the run's domain, one row per entry of `conditions`.

The domain class (`domain._target_`) says which conditions it offers and measures them on its held-out
contexts: knowledge's Table 2 (domains/knowledge/table2.py: no update, passage, self-edit sources,
trained policies) or ARC's Table 1 (domains/arc/table1.py: ICL, TTT + self-edit, SEAL after
`restem.rounds` behaviour-cloning rounds of the shared outer loop, oracle TTT). This stage checks the
conditions before any work, then writes `summary.json`, logs the domain's plots and prints its table.
Every step of a domain's table is resumable from the run dir.
"""

from __future__ import annotations

import time

from hydra.utils import get_class
from omegaconf import DictConfig

from seal_runner.errors import InputError
from seal_runner.records import write_json
from seal_runner.stages.common import setup_run

TABLE_METHODS = ("check_conditions", "evaluate_conditions", "format_conditions")


def table_domain(cfg: DictConfig) -> type:
    """The domain class whose evaluation table this run measures (seal_runner/domains/base.py)."""
    target = cfg.domain.get("_target_")
    try:
        cls = get_class(target) if target else None
    except Exception as exc:  # hydra wraps the import error of a mistyped path
        raise InputError(f"domain._target_={target!r} cannot be imported: {exc}") from None
    if cls is None or not all(hasattr(cls, name) for name in TABLE_METHODS):
        raise InputError(
            f"domain._target_={target} has no evaluation table for stage=evaluate (a domain class offers "
            f"one with {', '.join(TABLE_METHODS)}; seal_runner/domains/base.py); stage=restem runs its "
            "outer loop"
        )
    return cls


def check_conditions(cfg: DictConfig) -> None:
    """The domain's own check of `conditions`, run before the run dir or a model is touched."""
    table_domain(cfg).check_conditions(cfg)


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    domain = table_domain(cfg)
    domain.check_conditions(cfg)
    ctx = setup_run(cfg)
    summary = domain.evaluate_conditions(ctx, started)
    write_json(ctx.run_dir / "summary.json", summary)
    for name, path in summary["plots"].items():
        ctx.tracker.image(f"plots/{name}", path)
    ctx.tracker.finish()
    print(domain.format_conditions(summary))
    return summary
