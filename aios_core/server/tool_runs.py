"""Tool runs: a framework's own tool, run in a remote client's process, recorded as a tool syscall here.

``sdk.tool_syscall(name, fn)`` must work unchanged against a server, but ``fn`` lives in the
client. So the remote SDK opens a *run* (``POST /v1/tool-runs``): the kernel admits a ``tool``
syscall (queue, concurrency cap, deadline) and answers once it is running; the client runs ``fn``
and reports how it ended (``POST /v1/tool-runs/{id}``), which ends the syscall. The kernel's
record, metrics and deadline are the same as for an in-process tool syscall. A client that
never reports is ended by the syscall's deadline; the run is forgotten a minute later.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from aios.errors import AccessDeniedError, AIOSError, InvalidRequestError, QueueFullError
from aios.kernel import Kernel
from aios.wire import NotFoundError

#: Seconds a finished run stays known so its client can still learn how it ended.
KEEP_FINISHED_S = 60.0


class _ToolFailed(Exception):
    """The client reported that its tool raised (the syscall is recorded as failed)."""


@dataclass(slots=True)
class _Run:
    agent: str
    name: str
    outcome: asyncio.Future[tuple[bool, str]]
    task: asyncio.Task[None]


class ToolRuns:
    """The open tool runs of one server, at most ``limit`` at once."""

    def __init__(self, kernel: Kernel, limit: int):
        self._kernel = kernel
        self._limit = limit
        self._runs: dict[str, _Run] = {}

    def __len__(self) -> int:
        return len(self._runs)

    async def start(self, agent: str, name: object, timeout: float | None) -> dict[str, Any]:
        """Admit a tool syscall for ``agent`` and return ``{"id", "deadline_s"}`` once it runs."""
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidRequestError("name must be a tool name of 1..200 chars", field="name")
        if len(self._runs) >= self._limit:
            raise QueueFullError(f"{len(self._runs)} tool runs open (server.max_pending={self._limit})")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        outcome: asyncio.Future[tuple[bool, str]] = loop.create_future()
        started = asyncio.Event()

        async def call() -> None:
            started.set()
            ok, message = await outcome
            if not ok:
                raise _ToolFailed(message)

        task = loop.create_task(self._kernel.tool(agent, name, call, timeout=timeout))
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if not started.is_set():
            await task  # it ended before running: raises its error (deadline, shutdown...)
            raise AIOSError("the tool syscall ended before it ran")  # pragma: no cover - defensive
        run_id = secrets.token_urlsafe(16)
        self._runs[run_id] = _Run(agent, name, outcome, task)
        task.add_done_callback(lambda _: loop.call_later(KEEP_FINISHED_S, self._runs.pop, run_id, None))
        budget = timeout if timeout is not None else self._kernel.config.default_timeout
        left = None if budget is None else max(0.0, budget - (loop.time() - t0))
        return {"id": run_id, "deadline_s": left}

    async def finish(self, run_id: str, agent: str, ok: object, error: object) -> dict[str, Any]:
        """End run ``run_id`` with the client's outcome; ``{"status": "done" | "failed"}``."""
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(f"no open tool run {run_id[:40]!r} (finished long ago, or never started)",
                                field="run_id")  # fmt: skip
        if run.agent != agent:
            raise AccessDeniedError(f"tool run {run_id[:8]}... belongs to another agent", agent=agent)
        if not isinstance(ok, bool):
            raise InvalidRequestError("ok must be true or false", field="ok")
        message = ""
        if not ok:
            if not isinstance(error, dict) or not all(
                isinstance(error.get(k), str) for k in ("type", "message")
            ):
                raise InvalidRequestError("a failed run needs error: {type, message}", field="error")
            message = f"{error['type']}: {error['message']}"[:2000]
        if not run.outcome.done():
            run.outcome.set_result((ok, message))
        try:
            await asyncio.shield(run.task)
        except _ToolFailed:
            status = "failed"
        except AIOSError:
            self._runs.pop(run_id, None)
            raise
        else:
            status = "done" if ok else "failed"
        self._runs.pop(run_id, None)
        return {"status": status}

    def cancel_all(self) -> None:
        """Cancel every open run (the server is stopping)."""
        for run in list(self._runs.values()):
            run.task.cancel()
