"""Child processes die with the `seal-run` that started them (Linux; a no-op elsewhere).

A SIGKILLed `seal-run` (OOM killer, preemption, `kill -9`) runs no cleanup, so its children, vLLM's
engine core above all, kept running re-parented to init, holding memory and the GPU. vLLM 0.32 does
not cover this for its engine core (only its multiproc executor's workers watch a pipe from their
parent), and Linux lets only the child ask to be signalled when its parent dies
(`prctl(PR_SET_PDEATHSIG)`). So `seal-run` exports its pid in SEAL_RUNNER_PARENT (`adopt`), and a
process that starts with it set asks for SIGKILL on its parent's death (`die_with_parent`), then
exports its own pid for its children in turn. It runs when `seal_runner` is imported: multiprocessing
'spawn' children (the engine core, inner-loop workers) import the `seal-run` script, and with it this
package, before anything else; 'fork' children run it through an at-fork hook. A child whose parent
died before it could ask kills itself. The multiprocessing resource tracker needs nothing: it exits
once every process holding its pipe (the run and these children) is gone.

The kernel ties the signal to the thread that started the child, so children must be started from a
thread that lives as long as the run (the main thread here).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ENV = "SEAL_RUNNER_PARENT"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def adopt() -> None:
    """Make every child this process starts from now on die with it."""
    os.environ[ENV] = str(os.getpid())


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies, if a `seal-run` (or its child) started it."""
    parent = os.environ.get(ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != int(parent) and not _running(int(parent)):
        os.kill(os.getpid(), signal.SIGKILL)  # the run died before this process could ask
    adopt()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed parent nobody has reaped yet still has a pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


os.register_at_fork(after_in_child=die_with_parent)
