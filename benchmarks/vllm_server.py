"""``vllm serve MODEL`` as a managed subprocess: started, awaited until healthy, stopped.

For GPU machines with the optional ``vllm`` package. The server runs with prefix caching and
vLLM's priority scheduling on (the kernel passes each syscall's priority through), on a free local
port, in its own process group so stopping it stops its workers too. Its output goes to a log
file whose tail is quoted if it fails to start. ``exe`` can name any executable that takes
``serve MODEL --host H --port P ...`` and answers ``GET /health`` (tests use a stand-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

from aios.errors import BackendError, BackendTimeoutError, ConfigError

VLLM_FLAGS = ("--enable-prefix-caching", "--scheduling-policy", "priority")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ManagedVLLM:
    """``async with ManagedVLLM("Qwen/Qwen2.5-7B-Instruct") as base_url:`` — a running server."""

    def __init__(
        self,
        model: str,
        *,
        exe: str = "vllm",
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 1200.0,
        stop_timeout: float = 30.0,
        log_path: Path | None = None,
        poll_s: float = 0.5,
    ):
        if not model:
            raise ConfigError("a model name is needed for vllm serve", field="vllm")
        self.model = model
        self.exe = exe
        self.host = host
        self.port = port
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = log_path
        self.poll_s = poll_s
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The full command line (the port is chosen on first use)."""
        exe = shutil.which(self.exe)
        if exe is None:
            raise ConfigError(
                f"{self.exe!r} was not found: --vllm needs vLLM installed on a GPU machine "
                "(pip install vllm), or --vllm-exe naming a compatible server",
                field="vllm",
            )
        if self.port is None:
            self.port = free_port(self.host)
        return [
            exe,
            "serve",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            *VLLM_FLAGS,
            *self.extra_args,
        ]

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> str:
        """Start the server and wait until ``/health`` answers 200; return the API root."""
        cmd = self.command()
        log_path = self.log_path or Path(os.devnull)
        self._log = log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise
        return self.base_url

    async def _wait_healthy(self) -> None:
        assert self.proc is not None
        url = f"http://{self.host}:{self.port}/health"
        async with httpx.AsyncClient(timeout=5.0) as client:
            try:
                async with asyncio.timeout(self.startup_timeout):
                    while True:
                        if self.proc.returncode is not None:
                            raise BackendError(
                                f"vllm serve exited with code {self.proc.returncode} before it was healthy"
                                f"{self._tail()}",
                                backend="vllm",
                            )
                        with contextlib.suppress(httpx.HTTPError):
                            if (await client.get(url)).status_code == 200:
                                return
                        await asyncio.sleep(self.poll_s)
            except TimeoutError:
                raise BackendTimeoutError(
                    f"vllm serve was not healthy within {self.startup_timeout:g} s{self._tail()}",
                    backend="vllm",
                ) from None

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-15:]
        return "; log tail:\n" + "\n".join(lines) if lines else ""

    async def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``stop_timeout`` (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await proc.wait()
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        elif proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)  # workers it left behind
        if self._log is not None:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop())


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
