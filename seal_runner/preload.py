"""Start `seal-run` on CPU with Intel OpenMP (and tcmalloc where the system has it) preloaded.

vLLM's CPU guide asks for both in LD_PRELOAD, and a run without them warns that they are missing;
RESULTS.md ("Sampling and QA engines") has what they change here. The dynamic loader reads
LD_PRELOAD only when a program starts, so `seal-run` re-executes itself once, before anything heavy is
imported, with the libraries it found added; `exec` keeps the pid, and every child (vLLM's engine core,
inner-loop workers, Hydra's launcher jobs) inherits the variable. Nothing is required: Intel OpenMP
comes with the `cpu` extra (the `intel-openmp` wheel), tcmalloc only from the system, and without
either `seal-run` starts as it is. SEAL_PRELOAD=0 turns it off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "SEAL_PRELOAD"  # "0": never; "done": set in the re-executed process, so it happens once
TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")


def intel_openmp() -> Path | None:
    """The `intel-openmp` wheel's libiomp5.so, which pip puts in the environment's lib/."""
    path = Path(sys.prefix) / "lib" / "libiomp5.so"
    return path if path.is_file() else None


def tcmalloc() -> Path | None:
    """The system's tcmalloc (Debian/Ubuntu `libtcmalloc-minimal4`), if installed."""
    for directory in TCMALLOC_DIRS:
        for name in TCMALLOC_NAMES:
            if (path := Path(directory) / name).is_file():
                return path
    return None


def libraries() -> list[Path]:
    """What to preload: Intel OpenMP (only the CPU install has it) and then tcmalloc beside it."""
    iomp = intel_openmp()
    return [] if iomp is None else [lib for lib in (tcmalloc(), iomp) if lib is not None]


def reexec_with_preload() -> None:
    """Replace this process with itself, LD_PRELOAD extended, unless nothing is missing from it."""
    if os.environ.get(ENV) in ("0", "done") or not sys.platform.startswith("linux"):
        return
    current = [part for part in os.environ.get("LD_PRELOAD", "").split(":") if part]
    missing = [str(lib) for lib in libraries() if str(lib) not in current]
    if not missing:
        return
    env = {**os.environ, "LD_PRELOAD": ":".join(missing + current), ENV: "done"}
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
