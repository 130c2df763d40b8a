"""Running the server: ``serve`` (the ``aios serve`` command, signals, graceful drain) and
``ServerThread`` (a server on a background thread, for tests and for embedding).

uvicorn's own graceful shutdown waits for open connections and then cancels them abruptly; here
the drain starts first (``ServerState.begin_drain``): new requests get 503, in-flight ones get
``drain_seconds`` to finish, then the kernel stops and every remaining call ends with a clean error
(503, or an SSE error event) before uvicorn closes the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from aios.config import KernelConfig
from aios.errors import AIOSError, KernelInternalError
from aios.kernel import Kernel
from aios.server.app import create_app
from aios.server.settings import ServerConfig

#: Seconds uvicorn waits beyond the drain (the kernel's own stop takes up to 5 s).
_STOP_SLACK_S = 10.0


class DrainingServer(uvicorn.Server):
    """uvicorn, draining the AIOS app before it waits for connections to close."""

    def __init__(self, config: uvicorn.Config, app: Starlette):
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Begin the app's drain, then uvicorn's shutdown (stop accepting, wait, lifespan)."""
        ctx = getattr(self._app.state, "aios", None)
        if ctx is not None:
            ctx.state.begin_drain()
        await super().shutdown(sockets)


def _uvicorn_config(app: Starlette, cfg: ServerConfig, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        lifespan="on",
        timeout_graceful_shutdown=int(cfg.drain_seconds + _STOP_SLACK_S),
        server_header=False,
        **kw,
    )


def _startup_error(app: Starlette) -> BaseException | None:
    error = getattr(app.state, "startup_error", None)
    return error if isinstance(error, BaseException) else None


def serve(kernel_config: KernelConfig | None, server_config: ServerConfig) -> int:
    """Run the server in this (main) thread until SIGINT/SIGTERM; 0 on a clean stop."""
    app = create_app(kernel_config, server_config)
    server = DrainingServer(_uvicorn_config(app, server_config), app)
    server.run()
    error = _startup_error(app)
    if error is not None:
        raise error
    return 0 if server.started else 1


class ServerThread:
    """A server on a background thread bound to ``host:port`` (port 0: a free one); ``url`` once started."""

    def __init__(
        self,
        kernel_config: KernelConfig | None = None,
        server_config: ServerConfig | None = None,
        *,
        kernel_factory: Callable[[], Kernel] | None = None,
        access_log: bool = False,
    ):
        """Build the app (``kernel_factory`` injects a ready kernel, e.g. with test backends)."""
        self.config = server_config or ServerConfig(port=0)
        self.app = create_app(kernel_config, self.config, kernel_factory=kernel_factory)
        self._server = DrainingServer(_uvicorn_config(self.app, self.config, access_log=access_log), self.app)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        if self.port is None:
            raise AIOSError("the server has not started")
        return f"http://{self.config.host}:{self.port}"

    def start(self, *, timeout: float = 120.0) -> ServerThread:
        """Bind, start the thread and wait until the app's startup (kernel included) finished."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY on accepted connections only then
        # (with proto 0, Nagle and delayed ACKs added ~40 ms to every response).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name="aios-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                sock.close()
                raise _startup_error(self.app) or KernelInternalError("the server stopped during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise AIOSError(f"the server did not start within {timeout} s")
            time.sleep(0.02)
        return self

    def _run(self, sock: socket.socket) -> None:
        # SystemExit is uvicorn's answer to a failed startup; ``start`` raises the app's own error.
        with contextlib.suppress(SystemExit):
            asyncio.run(self._server.serve(sockets=[sock]))

    def stop(self, *, timeout: float | None = None) -> None:
        """Drain and stop (as on SIGTERM) and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(
                timeout if timeout is not None else self.config.drain_seconds + 2 * _STOP_SLACK_S
            )
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    @property
    def alive(self) -> bool:
        """Whether the server thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
