"""The agent-facing SDK: identity scopes, ``llm_chat`` (async and sync), streaming and metrics.

The agent's identity lives in a ``ContextVar``: each asyncio task and each thread sees its own,
so concurrent agents in one process never mix identities (the original AIOS kept it in a module
global). The kernel a call goes to is, in order: the ``kernel=`` argument, the kernel entered
with ``async with Kernel(...)`` in this task, or the process-default target: a remote kernel when
one is configured (``connect(url, token=...)``, or the ``AIOS_KERNEL_URL`` and
``AIOS_KERNEL_TOKEN`` environment variables), else an in-process kernel started on first use from
the config file and environment (the embedded model when nothing else is configured).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from aios.config import KernelConfig
from aios.errors import AIOSError, DeadlineExceededError, InvalidRequestError
from aios.kernel import Kernel, KernelThread, current_kernel
from aios.types import LLMRequest, LLMResult, Message

if TYPE_CHECKING:
    # Imported when first used (``_open``): a process without a server never loads httpx or the
    # managers for it.
    from aios.remote import RemoteConnection, RemoteKernel

T = TypeVar("T")
DEFAULT_AGENT = "default"
#: The environment variables that point the process-default target at a kernel server.
URL_ENV, TOKEN_ENV = "AIOS_KERNEL_URL", "AIOS_KERNEL_TOKEN"

#: What SDK calls run on: a kernel in this process or one behind a server (same methods).
AnyKernel: TypeAlias = "Kernel | RemoteKernel"
#: What the process default is: a kernel on its own thread, or a connection to a server.
Target: TypeAlias = "KernelThread | RemoteConnection"

_agent_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("aios_agent", default=None)


@contextmanager
def agent(name: str) -> Iterator[str]:
    """Run the block as agent ``name`` (sync or async code; tasks started inside inherit it)."""
    if not isinstance(name, str) or not name or len(name) > 200:
        raise InvalidRequestError("agent name must be a non-empty string of at most 200 chars", field="agent")
    token = _agent_var.set(name)
    try:
        yield name
    finally:
        _agent_var.reset(token)


def current_agent(default: str = DEFAULT_AGENT) -> str:
    """The agent identity of the calling task or thread."""
    return _agent_var.get() or default


class _DefaultKernel:
    """The process-default target, started lazily and at most once.

    A ``RemoteConnection`` when ``AIOS_KERNEL_URL`` is set (or after ``connect``), else a
    ``KernelThread``. This is the SDK's one piece of process state, by design: ``aios.patch(...)``
    in existing code must find a kernel without being handed one. It is guarded by a lock and can
    be replaced.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kt: Target | None = None

    def get(self, *, start: bool = True) -> Target | None:
        with self._lock:
            url = os.environ.get(URL_ENV)
            # A configured server is "running" already: connecting to it starts nothing.
            if self._kt is None and (start or url):
                self._kt = _open(url, os.environ.get(TOKEN_ENV) or None) if url else KernelThread().start()
            return self._kt

    def set(self, kt: Target | None) -> Target | None:
        with self._lock:
            old, self._kt = self._kt, kt
            return old

    def forget(self, kt: Target) -> None:
        """Drop ``kt`` if it is still the default (a connection that was closed by its owner)."""
        with self._lock:
            if self._kt is kt:
                self._kt = None


_default = _DefaultKernel()


def start_default_kernel(config: KernelConfig | None = None, **kernel_kwargs: Any) -> KernelThread:
    """Start (or replace) the process-default kernel with ``config``."""
    kt = KernelThread(config, **kernel_kwargs).start()
    old = _default.set(kt)
    if old is not None:
        old.stop()
    return kt


def stop_default_kernel() -> None:
    """Stop the process-default kernel (or close the default connection) if there is one."""
    old = _default.set(None)
    if old is not None:
        old.stop()


def _open(url: str, token: str | None, **kwargs: Any) -> RemoteConnection:
    from aios.remote import RemoteConnection

    conn = RemoteConnection(url, token=token, anonymous_agent=DEFAULT_AGENT, **kwargs)
    conn.on_stop.append(_default.forget)
    return conn.start()


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    default: bool = True,
    default_timeout: float = 600.0,
) -> RemoteConnection:
    """Connect to a kernel server (``aios serve``); SDK calls and adapters then run there.

    ``url`` and ``token`` default to ``AIOS_KERNEL_URL`` and ``AIOS_KERNEL_TOKEN``. The token is
    checked at once (a wrong one raises ``AccessDeniedError``). With ``default`` (the usual case)
    the connection becomes the process-default target, replacing any previous one; otherwise pass
    it as ``kernel=`` to SDK calls. ``close()`` (or leaving ``with connect(...)``) disconnects.
    """
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise InvalidRequestError(f"connect needs a url (or {URL_ENV})", field="url")
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    conn = _open(url, token, default_timeout=default_timeout)
    if default:
        old = _default.set(conn)
        if old is not None and old is not conn:
            old.stop()
    return conn


def _local_kernel(kernel: Kernel | RemoteConnection | None) -> Kernel | None:
    if kernel is not None and not isinstance(kernel, Kernel):
        return None  # a connection to a server
    k = kernel or current_kernel.get()
    if k is None or not k.running:
        return None
    return k


def _target(kernel: Kernel | RemoteConnection | None) -> Target:
    """Where a call that no running local kernel takes goes: the given connection or the default."""
    kt = _default.get() if kernel is None or isinstance(kernel, Kernel) else kernel
    assert kt is not None and kt.kernel is not None
    return kt


async def _run(
    fn: Callable[[AnyKernel], Coroutine[Any, Any, T]], kernel: Kernel | RemoteConnection | None
) -> T:
    k = _local_kernel(kernel)
    if k is not None:
        return await fn(k)
    kt = _target(kernel)
    assert kt.kernel is not None
    cf = asyncio.run_coroutine_threadsafe(fn(kt.kernel), kt.loop)
    try:
        return await asyncio.wrap_future(cf)
    except asyncio.CancelledError:
        cf.cancel()  # cancels the task on the kernel loop, which cancels the syscall
        raise


def _sync(fn: Callable[[AnyKernel], Coroutine[Any, Any, T]], timeout: float | None) -> T:
    k = current_kernel.get()
    if k is not None and k.running and k.loop is not None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is k.loop:
            raise AIOSError(
                "a *_sync call inside the kernel's event loop would block it; await the async form"
            )
        # A worker thread of a program whose kernel runs on its own loop: submit there.
        cf = asyncio.run_coroutine_threadsafe(fn(k), k.loop)
        try:
            return cf.result(None if timeout is None else timeout + 5.0)
        except TimeoutError:
            cf.cancel()
            raise DeadlineExceededError(f"no answer within {timeout} s") from None
    kt = _default.get()
    assert kt is not None
    return kt.call(fn, timeout=None if timeout is None else timeout + 5.0)


def _request(messages: list[Message], **params: Any) -> LLMRequest:
    return LLMRequest(messages=list(messages), **params)


async def llm_chat(
    messages: list[Message],
    *,
    model: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    temperature: float = 0.0,
    max_tokens: int = 256,
    stop: list[str] | None = None,
    response_format: dict[str, Any] | None = None,
    priority: int = 0,
    timeout: float | None = None,
    agent: str | None = None,
    kernel: Kernel | RemoteConnection | None = None,
) -> LLMResult:
    """Ask the kernel's LLM; returns text and/or tool calls, with usage. Raises ``AIOSError``."""
    req = _request(
        messages,
        model=model,
        tools=tools,
        tool_choice=tool_choice,
        temperature=temperature,
        max_tokens=max_tokens,
        stop=stop,
        response_format=response_format,
    )
    who = agent or current_agent()
    return await _run(lambda k: k.llm(who, req, priority=priority, timeout=timeout), kernel)


def llm_chat_sync(messages: list[Message], **kw: Any) -> LLMResult:
    """Synchronous ``llm_chat`` on the process-default kernel (same arguments, no ``kernel=``)."""
    who = kw.pop("agent", None) or current_agent()
    priority = kw.pop("priority", 0)
    timeout = kw.pop("timeout", None)
    req = _request(messages, **kw)
    return _sync(lambda k: k.llm(who, req, priority=priority, timeout=timeout), timeout)


class LLMStream:
    """An LLM syscall whose text arrives piece by piece: ``async for piece in stream``.

    Works with a kernel on this event loop, on another thread (the process-default kernel) or
    behind a server (a ``RemoteKernel``, whose loop is the connection's thread).
    After the iteration ends, ``result`` holds the full ``LLMResult``; an error of the syscall is
    raised from the iteration. Leaving the loop early (``break``, an exception, cancellation)
    cancels the syscall, so the model stops generating for nobody.
    """

    def __init__(
        self, kernel: AnyKernel, agent: str, request: LLMRequest, priority: int, timeout: float | None
    ):
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        request.stream = True
        self.result: LLMResult | None = None
        self._cancel: Callable[[], None]
        if isinstance(kernel, Kernel) and kernel.loop is loop:
            local = kernel
            sc = local.submit_llm(
                agent, request, priority=priority, timeout=timeout, on_delta=self._queue.put_nowait
            )
            self._future: asyncio.Future[LLMResult] = sc.future

            def cancel() -> None:
                if not sc.status.final:
                    local.dispatcher.cancel(sc)

        else:

            def deliver(piece: str) -> None:  # runs on the kernel's loop; hands over to ours
                loop.call_soon_threadsafe(self._queue.put_nowait, piece)

            assert kernel.loop is not None
            cf = asyncio.run_coroutine_threadsafe(
                kernel.llm(agent, request, priority=priority, timeout=timeout, on_delta=deliver), kernel.loop
            )
            # Deltas are scheduled on our loop before the completion is, so none is lost.
            self._future = asyncio.wrap_future(cf)

            def cancel() -> None:
                cf.cancel()

        self._cancel = cancel

    async def __aiter__(self) -> AsyncIterator[str]:
        fut = self._future
        try:
            while True:
                if self._queue.empty() and fut.done():
                    break
                getter = asyncio.ensure_future(self._queue.get())
                waits: set[asyncio.Future[Any]] = {getter, fut}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            self.result = fut.result()
        finally:
            if not fut.done():
                self._cancel()


async def llm_stream(
    messages: list[Message],
    *,
    priority: int = 0,
    timeout: float | None = None,
    agent: str | None = None,
    kernel: Kernel | RemoteConnection | None = None,
    **params: Any,
) -> LLMStream:
    """Start a streaming LLM syscall (on this loop's kernel, else the default one); iterate it."""
    k: AnyKernel | None = _local_kernel(kernel)
    if k is None:
        k = _target(kernel).kernel
        assert k is not None
    return LLMStream(k, agent or current_agent(), _request(messages, **params), priority, timeout)


def _default_timeout(kernel: AnyKernel) -> float | None:
    """The deadline a call without its own timeout gets on ``kernel``."""
    return kernel.config.default_timeout if isinstance(kernel, Kernel) else kernel.default_timeout


class SyncLLMStream:
    """Synchronous streaming: ``for piece in stream`` yields text as it comes; then ``result``.

    Closing the iterator early (``break``, ``close()``) cancels the syscall. Each wait is bounded
    by the deadline, so a stalled kernel raises ``DeadlineExceededError`` instead of hanging.
    """

    def __init__(
        self, kernel: AnyKernel, agent: str, request: LLMRequest, priority: int, timeout: float | None
    ):
        import queue as queue_mod

        assert kernel.loop is not None
        self._kernel = kernel
        self._pieces: queue_mod.SimpleQueue[str] = queue_mod.SimpleQueue()
        self._empty = queue_mod.Empty
        request.stream = True
        self._cf = asyncio.run_coroutine_threadsafe(
            kernel.llm(agent, request, priority=priority, timeout=timeout, on_delta=self._pieces.put),
            kernel.loop,
        )
        self._limit = (timeout or _default_timeout(kernel) or 600.0) + 5.0
        self.result: LLMResult | None = None

    def __iter__(self) -> Iterator[str]:
        cf, limit = self._cf, self._limit
        try:
            while not (cf.done() and self._pieces.empty()):
                try:
                    yield self._pieces.get(timeout=0.05)
                except self._empty:
                    limit -= 0.05
                    if limit <= 0:
                        raise DeadlineExceededError("no streamed output within the deadline") from None
            self.result = cf.result()  # raises the syscall's error, if any
        finally:
            if not cf.done():
                cf.cancel()


def llm_stream_sync(
    messages: list[Message],
    *,
    priority: int = 0,
    timeout: float | None = None,
    agent: str | None = None,
    **params: Any,
) -> SyncLLMStream:
    """Synchronous streaming on the process-default kernel; iterate it, then read ``.result``."""
    kt = _default.get()
    assert kt is not None and kt.kernel is not None
    return SyncLLMStream(kt.kernel, agent or current_agent(), _request(messages, **params), priority, timeout)


def kernel_stats(kernel: Kernel | RemoteConnection | None = None) -> dict[str, Any]:
    """The kernel's metrics snapshot (queue, in-flight, per-agent, latency).

    From a server, ``agents`` lists only the agents the token may act as (all, for an admin).
    """
    k = _local_kernel(kernel)
    if k is not None:
        return k.stats()
    kt = _default.get(start=False) if kernel is None or isinstance(kernel, Kernel) else kernel
    if kt is None or kt.kernel is None:
        raise AIOSError("no kernel is running")

    async def stats(kk: AnyKernel) -> dict[str, Any]:
        return kk.stats() if isinstance(kk, Kernel) else await kk.fetch_stats()

    return kt.call(stats, timeout=10.0)


async def tool_syscall(
    name: str,
    fn: Callable[..., Any],
    *args: Any,
    agent: str | None = None,
    timeout: float | None = None,
    kernel: Kernel | RemoteConnection | None = None,
    **kwargs: Any,
) -> Any:
    """Run a framework's own tool ``fn`` as a tool syscall (recorded, limited, with a deadline).

    Coroutine functions are awaited on the kernel's loop; plain functions run in a worker thread
    so they never block it. Exceptions of the tool propagate to the caller unchanged, as the
    framework expects; the syscall is recorded as failed.
    """
    who = agent or current_agent()

    async def run(k: AnyKernel) -> Any:
        async def call() -> Any:
            if inspect.iscoroutinefunction(fn):
                return await fn(*args, **kwargs)
            return await asyncio.to_thread(fn, *args, **kwargs)

        return await k.tool(who, name, call, timeout=timeout)

    return await _run(run, kernel)


def tool_syscall_sync(
    name: str,
    fn: Callable[..., Any],
    *args: Any,
    agent: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """Synchronous ``tool_syscall`` on the process-default kernel."""
    who = agent or current_agent()

    async def run(k: AnyKernel) -> Any:
        async def call() -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

        return await k.tool(who, name, call, timeout=timeout)

    return _sync(run, timeout)


async def syscall(
    kind: str,
    op: str,
    /,
    *,
    agent: str | None = None,
    timeout: float | None = None,
    kernel: Kernel | RemoteConnection | None = None,
    **args: Any,
) -> Any:
    """A memory/storage/tool/access syscall: ``await syscall("storage", "write", key="k", value="v")``."""
    who = agent or current_agent()
    return await _run(lambda k: k.syscall(who, kind, op, timeout=timeout, **args), kernel)


def syscall_sync(
    kind: str, op: str, *, agent: str | None = None, timeout: float | None = None, **args: Any
) -> Any:
    """Synchronous ``syscall`` on the process-default kernel."""
    who = agent or current_agent()
    return _sync(lambda k: k.syscall(who, kind, op, timeout=timeout, **args), timeout)


async def llm_call_tools(
    messages: list[Message],
    *,
    tools: list[str | dict[str, Any]],
    tool_choice: str | dict[str, Any] | None = "auto",
    max_rounds: int = 3,
    priority: int = 0,
    timeout: float | None = None,
    agent: str | None = None,
    kernel: Kernel | RemoteConnection | None = None,
    **params: Any,
) -> Any:
    """The call-tool path: the model chooses among kernel tools and the kernel runs them.

    Returns a ``ToolLoopResult`` (final ``result``, the ``messages``, and each tool call with its
    ``ToolResult``).
    """
    who = agent or current_agent()
    req = _request(messages, tools=tools, tool_choice=tool_choice, **params)
    return await _run(
        lambda k: k.llm_with_tools(who, req, max_rounds=max_rounds, priority=priority, timeout=timeout),
        kernel,
    )
