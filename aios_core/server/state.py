"""The server's per-process state: kernel, tokens, draining, in-flight requests, helpers of every route.

One ``ServerState`` per app. Shutdown happens in two steps: ``begin_drain`` makes new requests
answer 503, then in-flight requests get ``drain_seconds`` to finish; after that ``stopping`` is
set, every waiting handler gives up with a 503, and the kernel stops, which resolves every
queued or running LLM syscall with ``CancelledError`` (a 503 or an SSE error event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aios.errors import (
    AIOSError,
    InvalidRequestError,
    KernelInternalError,
    KernelNotRunningError,
    QueueFullError,
)
from aios.kernel import Kernel
from aios.server.auth import Principal, TokenBook
from aios.server.settings import ServerConfig
from aios.wire import AuthenticationError, PayloadTooLargeError, error_body, status_of

T = TypeVar("T")
_log = logging.getLogger("aios.server")

AGENT_HEADER = "x-aios-agent"
PRIORITY_HEADER = "x-aios-priority"
TIMEOUT_HEADER = "x-aios-timeout"
MAX_TIMEOUT = 24 * 3600.0


class ClientGoneError(Exception):
    """The client disconnected while its request was being served (nobody to answer)."""


@dataclass(slots=True)
class Caller:
    """An authenticated request: the token's principal and the agent the request acts as."""

    principal: Principal
    agent: str


@dataclass(slots=True)
class ServerState:
    """What the routes share: the kernel, the tokens, the config, and shutdown state."""

    kernel: Kernel
    tokens: TokenBook
    config: ServerConfig
    draining: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    pending: int = 0
    #: HTTP responses by status code, for /metrics.
    responses: Counter[int] = field(default_factory=Counter)
    #: Cleanups run once the kernel stopped (tool runs waiting for their clients).
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _drain: asyncio.Task[None] | None = None

    # -- shutdown ------------------------------------------------------------------------------

    def begin_drain(self, grace: float | None = None) -> asyncio.Task[None]:
        """Refuse new requests, give in-flight ones ``grace`` seconds, then stop the kernel."""
        self.draining = True
        if self._drain is None:
            wait = self.config.drain_seconds if grace is None else grace
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_stop(wait))
        return self._drain

    async def _drain_then_stop(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while self.in_flight > 0 and loop.time() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))
        self.stopping.set()
        for cleanup in self.on_stop:
            with contextlib.suppress(Exception):
                cleanup()
        await self.kernel.stop()

    # -- per request ---------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Caller:
        """The caller of ``request`` (401 without a valid token, 403 for a forbidden agent)."""
        principal = self.tokens.authenticate(request.headers.get("authorization"))
        return Caller(principal, principal.agent_for(request.headers.get(AGENT_HEADER)))

    def check_open(self) -> None:
        """Raise 503 while draining or stopped."""
        if self.draining or not self.kernel.running:
            raise KernelNotRunningError("the kernel server is shutting down; no new requests are taken")

    async def guard(self, request: Request, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the server stops (503) or the client leaves first (cancelled)."""
        task: asyncio.Future[T] = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stopping.wait())
        gone = asyncio.ensure_future(_disconnected(request))
        waits: set[asyncio.Future[Any]] = {task, stop, gone}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if stop.done():
                raise KernelNotRunningError("the kernel server is shutting down; the call was cancelled")
            raise ClientGoneError()
        finally:
            for t in (task, stop, gone):
                t.cancel()

    @contextlib.contextmanager
    def pending_slot(self) -> Iterator[None]:
        """Hold one of ``max_pending`` slots for a non-LLM call (429 when none is free)."""
        if self.pending >= self.config.max_pending:
            raise QueueFullError(
                f"{self.pending} non-LLM calls in progress (server.max_pending={self.config.max_pending})"
            )
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    def error(self, exc: AIOSError) -> JSONResponse:
        """The JSON error response for ``exc`` (with Retry-After / WWW-Authenticate as fitting)."""
        status = status_of(exc)
        headers: dict[str, str] = {}
        if status in (429, 503):
            headers["Retry-After"] = str(self.config.retry_after)
        if isinstance(exc, AuthenticationError):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(error_body(exc, status), status_code=status, headers=headers)


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body must have been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def read_json(request: Request, max_bytes: int, *, empty: Any = None) -> Any:
    """The request body as JSON, refusing more than ``max_bytes`` (413) or bad JSON (400).

    An empty body is ``empty`` when that is given, else a 400.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequestError("Content-Length is not a number", field="Content-Length") from None
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"the request body is {size} bytes; at most {max_bytes} are accepted", field="body"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"the request body exceeds {max_bytes} bytes", field="body")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        if empty is not None:
            return empty
        raise InvalidRequestError("the request body must be a JSON object", field="body")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}", field="body") from None


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and neither does this server.
    raise InvalidRequestError(f"the request body contains {name}, which is not JSON", field="body")


def json_object(value: Any, where: str = "body") -> dict[str, Any]:
    """``value`` if it is a JSON object, else a 400 naming ``where``."""
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where} must be a JSON object", field=where)
    return value


def header_int(request: Request, name: str) -> int | None:
    """An integer header, or None when absent (400 when not an integer)."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidRequestError(f"header {name} must be an integer, got {raw[:40]!r}", field=name) from None


def timeout_of(value: object, where: str) -> float | None:
    """A syscall timeout in seconds (None: the kernel's default); 400 unless in (0, MAX_TIMEOUT]."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidRequestError(f"{where} must be a number of seconds", field=where) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT:
        raise InvalidRequestError(f"{where} must be a number of seconds in (0, {MAX_TIMEOUT:g}]", field=where)
    return float(value)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def endpoint(
    state_of: Callable[[Request], ServerState], fn: Handler, *, open_when_draining: bool = False
) -> Handler:
    """Wrap a route: count it in flight, refuse it while draining, turn errors into JSON responses."""

    async def handle(request: Request) -> Response:
        try:
            state = state_of(request)
        except AIOSError as exc:  # before startup or after shutdown
            return JSONResponse(error_body(exc), status_code=status_of(exc))
        state.in_flight += 1
        response: Response | None = None
        try:
            if not open_when_draining:
                state.check_open()
            response = await fn(request)
        except ClientGoneError:
            response = Response(status_code=499)
        except AIOSError as exc:
            response = state.error(exc)
        except Exception as exc:
            _log.exception("unexpected error in %s %s", request.method, request.url.path)
            response = state.error(KernelInternalError(f"internal server error ({type(exc).__name__})"))
        finally:
            # A streaming response is still in flight: it counts itself down when it ends.
            if not getattr(response, "counts_itself", False):
                state.in_flight -= 1
        state.responses[response.status_code] += 1
        return response

    return handle
