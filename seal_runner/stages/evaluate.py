"""`stage=evaluate`: the paper's evaluation table of the run's domain, one row per entry of `conditions`.

The domain (`domain._target_`) says which conditions it offers and measures them on its held-out
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
from seal_runner.stages.common import build_domain, setup_run


def check_conditions(cfg: DictConfig) -> None:
    """The domain's own check of `conditions`, run before the run dir or a model is touched; a domain
    without an evaluation table is named."""
    target = cfg.domain.get("_target_")
    check = getattr(get_class(target), "check_conditions", None) if target else None
    if check is None:
        raise InputError(
            f"domain={cfg.domain.get('name')} has no evaluation table for stage=evaluate (its domain "
            "class needs check_conditions, evaluate_conditions and format_conditions); stage=restem "
            "runs its outer loop"
        )
    check(cfg)


def run(cfg: DictConfig) -> dict:
    started = time.perf_counter()
    check_conditions(cfg)
    ctx = setup_run(cfg)
    domain = build_domain(cfg, ctx)
    summary = domain.evaluate_conditions(started)
    write_json(ctx.run_dir / "summary.json", summary)
    for name, path in summary["plots"].items():
        ctx.tracker.image(f"plots/{name}", path)
    ctx.tracker.finish()
    print(domain.format_conditions(summary))
    return summary
