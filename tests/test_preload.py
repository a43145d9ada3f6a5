"""`seal-run` restarts once with Intel OpenMP preloaded (seal_runner/preload.py), keeping its pid and
arguments; nothing is preloaded when the library is absent or SEAL_PRELOAD=0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seal_runner import preload

PROBE = (
    "import json, os, sys\n"
    "from seal_runner.preload import reexec_with_preload\n"
    "reexec_with_preload()\n"
    "maps = open('/proc/self/maps').read()\n"
    "print(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:], 'preload': os.environ.get('LD_PRELOAD', ''),"
    " 'iomp_mapped': 'libiomp5.so' in maps, 'state': os.environ.get('SEAL_PRELOAD')}))\n"
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux's"
)


def probe(**env: str) -> dict:
    """Run PROBE as a child; what it saw, and whether its pid is the one this process started."""
    with subprocess.Popen(
        [sys.executable, "-c", PROBE, "stage=restem", "lora.lr=1e-3"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    result = json.loads(out)
    return result | {"same_pid": result["pid"] == child.pid}


def test_nothing_to_preload_without_intel_openmp(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert preload.intel_openmp() is None and preload.libraries() == []


def test_intel_openmp_from_the_environment_comes_after_a_system_tcmalloc(tmp_path, monkeypatch) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libiomp5.so").touch()
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "libtcmalloc_minimal.so.4").touch()
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert preload.libraries() == ([preload.tcmalloc()] if preload.tcmalloc() else []) + [
        tmp_path / "lib" / "libiomp5.so"
    ]
    monkeypatch.setattr(preload, "TCMALLOC_DIRS", (str(tmp_path / "sys"),))
    assert preload.libraries() == [
        tmp_path / "sys" / "libtcmalloc_minimal.so.4",
        tmp_path / "lib" / "libiomp5.so",
    ]


@linux_only
def test_the_cpu_install_restarts_once_with_intel_openmp_mapped_same_pid_same_arguments() -> None:
    assert preload.intel_openmp() is not None, "make setup installs the cpu extra, intel-openmp with it"
    result = probe()
    assert result["iomp_mapped"] and str(preload.intel_openmp()) in result["preload"].split(":")
    assert result["argv"] == ["stage=restem", "lora.lr=1e-3"] and result["state"] == "done"
    assert result["same_pid"]


@linux_only
def test_seal_preload_0_and_an_existing_preload_start_nothing_again() -> None:
    assert not probe(SEAL_PRELOAD="0")["iomp_mapped"]
    already = probe(LD_PRELOAD=str(preload.intel_openmp()), SEAL_PRELOAD="")
    assert already["iomp_mapped"] and already["state"] == ""  # nothing missing: no second start
