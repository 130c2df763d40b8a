"""Factories for server tests: a kernel server on 127.0.0.1 and a free port, always stopped.

Server modules are imported inside the fixtures, so this file also loads in a framework
environment without starlette/uvicorn (where only the LangChain test runs, and starts its server
as a subprocess).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aios.kernel import Kernel
    from aios.server import ServerThread

#: Bearer tokens of the test agents (fixed: tests are deterministic; long enough for the server).
TOKENS = {
    "alice": "tok-alice-0123456789abcdef",
    "bob": "tok-bob-0123456789abcdef",
    "team": "tok-team-0123456789abcdef",
    "admin": "tok-admin-0123456789abcdef",
}


def token_table() -> dict[str, dict[str, Any]]:
    """The ``server.tokens`` table for ``TOKENS``: team may act as team-*, admin as anyone."""
    return {
        TOKENS["alice"]: {"agent": "alice"},
        TOKENS["bob"]: {"agent": "bob"},
        TOKENS["team"]: {"agent": "team", "act_as": ["team-*"]},
        TOKENS["admin"]: {"agent": "admin", "groups": ["admin"], "min_priority": None},
    }


def auth(who: str) -> dict[str, str]:
    """The Authorization header of a test agent."""
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def free_port() -> int:
    """A port that was free a moment ago (for subprocess servers, which bind it themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


ServeFactory = Callable[..., "ServerThread"]


@pytest.fixture
def serve(tmp_path: Any) -> Iterator[ServeFactory]:
    """``serve(backends=..., kernel={...}, server={...})`` starts a server; all are stopped after the test.

    Default: one sim core (capacity 4, 1 ms per token), data in ``tmp_path``, the ``TOKENS``.
    ``backends`` (name -> Backend) injects ready backends instead.
    """
    from aios.backends.sim import SimBackend
    from aios.config import KernelConfig
    from aios.kernel import Kernel
    from aios.server import ServerThread
    from aios.server.settings import server_config_from_mapping

    started: list[ServerThread] = []

    def factory(
        *,
        backends: dict[str, Any] | None = None,
        kernel: dict[str, Any] | None = None,
        server: dict[str, Any] | None = None,
        data_dir: Any = None,
    ) -> ServerThread:
        cfg = server_config_from_mapping(
            {
                "port": 0,
                "log_level": "warning",
                "drain_seconds": 2.0,
                "tokens": token_table(),
                **(server or {}),
            }
        )
        kcfg = KernelConfig(backends=[], data_dir=str(data_dir or tmp_path / "data"), **(kernel or {}))

        def make() -> Kernel:
            ready = backends if backends is not None else {"sim": SimBackend(capacity=4, token_time=0.001)}
            return Kernel(kcfg, backends=ready, entry_points=False)

        srv = ServerThread(server_config=cfg, kernel_factory=make)
        started.append(srv)
        return srv.start()

    yield factory
    for srv in started:
        srv.stop()
        assert not srv.alive, "a test server did not stop"


@pytest.fixture
def server(serve: ServeFactory) -> ServerThread:
    """A default test server."""
    return serve()
