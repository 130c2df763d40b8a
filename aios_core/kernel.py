"""The kernel: the composition root that builds cores, policy, managers and dispatcher from config.

``Kernel`` lives on one asyncio loop (``async with Kernel(cfg) as k``). ``KernelThread`` runs a
kernel on a private loop in a background thread, for synchronous programs and for frameworks
that call the LLM from threads; the SDK's ``*_sync`` functions submit to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from aios.backends.base import Backend
from aios.clock import Clock, MonotonicClock
from aios.config import KernelConfig, load_config
from aios.context import ContextManager
from aios.errors import (
    AIOSError,
    ConfigError,
    InvalidRequestError,
    KernelNotRunningError,
    ToolError,
    UnknownBackendError,
)
from aios.metrics import MetricsCollector
from aios.plugins import make_plugin_manager, merged
from aios.scheduler.dispatcher import Core, Dispatcher
from aios.scheduler.policies import HeapPolicy, TimeSlice, make_policy
from aios.scheduler.quota import QuotaBook
from aios.syscalls import Syscall
from aios.types import LLMRequest, LLMResult, ToolCall

if TYPE_CHECKING:
    from aios.services import Services

T = TypeVar("T")

#: Longest agent name accepted (the server's X-AIOS-Agent header has the same bound).
MAX_AGENT_CHARS = 200

#: The kernel entered with ``async with Kernel()`` in this task (read by the SDK).
current_kernel: contextvars.ContextVar[Kernel | None] = contextvars.ContextVar("aios_kernel", default=None)


class Kernel:
    """Owns the cores and the dispatcher; serves syscalls to many concurrent agents."""

    def __init__(
        self,
        config: KernelConfig | None = None,
        *,
        backends: Mapping[str, Backend] | None = None,
        policy: HeapPolicy | None = None,
        clock: Clock | None = None,
        plugins: tuple[object, ...] = (),
        entry_points: bool = True,
    ):
        """Build from ``config`` (default: ``load_config()``); ``backends`` injects ready instances."""
        if config is None:
            config = load_config() if backends is None else KernelConfig(backends=[])
        if backends is None:
            config.validate()
        self.config = config
        self.clock: Clock = clock or MonotonicClock()
        self._pm = make_plugin_manager(entry_points=entry_points, extra=plugins)
        self.backends: dict[str, Backend] = dict(backends or {})
        if not self.backends:
            factories = merged(self._pm.hook.aios_backends(), "backend kind")
            for bc in config.backends:
                factory = factories.get(bc.kind)
                if factory is None:
                    raise UnknownBackendError(
                        f"unknown backend kind {bc.kind!r} for core {bc.name!r}; "
                        f"available: {sorted(factories)}",
                        field="backends.kind",
                    )
                try:
                    self.backends[bc.name] = factory(name=bc.name, **bc.options)
                except TypeError as exc:
                    raise ConfigError(f"backend {bc.name!r}: {exc}", field=f"backends.{bc.name}") from None
        if policy is None:
            policy = self._make_policy(config)
        self.policy = policy
        self.metrics = MetricsCollector(keep=config.metrics_keep)
        self.context = ContextManager(max_bytes=config.context_max_bytes)
        cores = [Core(name=n, backend=b, capacity=b.capabilities.capacity) for n, b in self.backends.items()]
        self.dispatcher = Dispatcher(
            cores,
            policy,
            clock=self.clock,
            context=self.context,
            metrics=self.metrics,
            quotas=QuotaBook(config.quotas, config.default_quota),
            max_queued=config.max_queued,
        )
        self.routes = dict(config.routes)
        self._all_cores = tuple(self.backends)
        self._services: Services | None = None
        #: The event loop the kernel runs on (set by ``start``); other threads submit through it.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._stopped = False

    def _make_policy(self, config: KernelConfig) -> HeapPolicy:
        sl = TimeSlice(tokens=config.slice_tokens, seconds=config.slice_seconds)
        extra = merged(self._pm.hook.aios_policies(), "scheduler")
        if config.scheduler in extra:
            policy: HeapPolicy = extra[config.scheduler](slice=sl)
            return policy
        return make_policy(config.scheduler, sl)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Kernel:
        """Start every backend (load models, open pools)."""
        if self._stopped:
            raise KernelNotRunningError("a stopped kernel cannot be restarted; build a new one")
        if not self._started:
            started: list[Backend] = []
            try:
                for b in self.backends.values():
                    await b.start()
                    started.append(b)
            except BaseException:
                for b in started:
                    await b.close()
                raise
            self._started = True
            self.loop = asyncio.get_running_loop()
        current_kernel.set(self)
        return self

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Cancel what is queued or running (callers get ``CancelledError``), then close backends."""
        if self._stopped:
            return
        self._stopped = True
        await self.dispatcher.close(timeout=timeout)
        if self._services is not None:
            with contextlib.suppress(Exception):
                await self._services.close()
        for b in self.backends.values():
            # Closing one backend must not leave the others open.
            with contextlib.suppress(Exception):
                await b.close()

    async def __aenter__(self) -> Kernel:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._started and not self._stopped

    # -- syscalls ---------------------------------------------------------------------------

    def resolve(self, model: str | None) -> tuple[str, ...]:
        """The cores that may serve ``model``: the routing table, a core's name, or the default."""
        if model:
            if model in self.routes:
                return (self.routes[model],)
            if model in self.backends:
                return (model,)
        if self.config.default_core is not None:
            return (self.config.default_core,)
        return self._all_cores

    def _deadline(self, timeout: float | None) -> float | None:
        t: object = self.config.default_timeout if timeout is None else timeout
        if t is None:
            return None
        # NaN and inf would pass a plain 't <= 0' and give a deadline that never (or always) fires.
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
            raise InvalidRequestError(
                f"timeout must be a finite number of seconds > 0, got {t!r:.50}", field="timeout"
            )
        return self.clock.now() + t

    @staticmethod
    def _check_agent(agent: object) -> None:
        # The name keys metrics, quotas and storage: a non-string would fail there, after the call.
        if not isinstance(agent, str) or not agent or len(agent) > MAX_AGENT_CHARS:
            raise InvalidRequestError(
                f"agent must be a non-empty string of at most {MAX_AGENT_CHARS} characters",
                field="agent",
            )

    def submit_llm(
        self,
        agent: str,
        request: LLMRequest,
        *,
        priority: int = 0,
        timeout: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Syscall:
        """Validate and queue an LLM syscall; await ``syscall.future`` for the ``LLMResult``."""
        self._check_agent(agent)
        if not self.running:
            raise KernelNotRunningError("the kernel is not running", agent=agent)
        request.validate()
        sc = Syscall(
            agent=agent,
            kind="llm",
            payload=request,
            future=asyncio.get_running_loop().create_future(),
            priority=priority,
            deadline=self._deadline(timeout),
            on_delta=on_delta,
            candidates=self.resolve(request.model),
        )
        self.dispatcher.submit(sc)
        return sc

    async def llm(
        self,
        agent: str,
        request: LLMRequest,
        *,
        priority: int = 0,
        timeout: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> LLMResult:
        """Run an LLM syscall to its end; cancelling the caller cancels the syscall."""
        sc = self.submit_llm(agent, request, priority=priority, timeout=timeout, on_delta=on_delta)
        result: LLMResult = await self.wait(sc)
        return result

    async def wait(self, sc: Syscall) -> Any:
        """Await a submitted syscall; if the awaiting task is cancelled, so is the syscall."""
        try:
            return await asyncio.shield(sc.future)
        except asyncio.CancelledError:
            if not sc.status.final:
                self.dispatcher.cancel(sc)
            raise

    async def service(
        self,
        agent: str,
        kind: str,
        fn: Callable[[], Awaitable[T]],
        *,
        payload: Any = None,
        timeout: float | None = None,
        concurrency: int = 64,
    ) -> T:
        """Run a non-LLM syscall (memory, storage, tool, access) through the dispatcher."""
        self._check_agent(agent)
        if not self.running:
            raise KernelNotRunningError("the kernel is not running", agent=agent)
        sc = Syscall(
            agent=agent,
            kind=kind,
            payload=payload,
            future=asyncio.get_running_loop().create_future(),
            deadline=self._deadline(timeout),
        )
        result: T = await self.dispatcher.run_service(sc, fn, concurrency=concurrency)
        return result

    async def tool(
        self,
        agent: str,
        name: str,
        call: Callable[[], Coroutine[Any, Any, T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """Run a framework's own tool as a ``tool`` syscall; its exception reaches the caller as is."""
        raised: list[BaseException] = []

        async def guarded() -> T:
            try:
                return await call()
            except Exception as exc:
                raised.append(exc)
                raise ToolError(f"tool {name!r} raised {type(exc).__name__}: {exc}", tool=name) from exc

        try:
            return await self.service(agent, "tool", guarded, payload={"tool": name}, timeout=timeout)
        except ToolError:
            if raised:
                raise raised[0] from None
            raise

    @property
    def services(self) -> Services:
        """Memory, storage, tool and access managers, built on first use (storage opens a file)."""
        if self._services is None:
            from aios.services import Services  # managers load only when first used

            self._services = Services(self.config, plugins=self._pm)
        return self._services

    async def syscall(
        self, agent: str, kind: str, op: str, /, *, timeout: float | None = None, **args: Any
    ) -> Any:
        """Run a memory/storage/tool/access syscall, e.g. ``syscall("a", "storage", "read", key="k")``."""
        self._check_agent(agent)
        if not self.running:
            raise KernelNotRunningError("the kernel is not running", agent=agent)
        entry, args = self.services.resolve(kind, op, args)
        return await self.service(
            agent,
            kind,
            lambda: entry.handler(agent, **args),
            payload={"op": op},
            timeout=timeout,
            concurrency=entry.concurrency,
        )

    async def llm_with_tools(
        self,
        agent: str,
        request: LLMRequest,
        *,
        max_rounds: int = 3,
        priority: int = 0,
        timeout: float | None = None,
    ) -> ToolLoopResult:
        """The paper's call-tool path: the model picks kernel tools, the kernel runs them.

        ``request.tools`` may hold tool *names* registered with the kernel (or full specs of
        them). Each round, tool calls in the answer run as tool syscalls and their results go back
        as tool messages; a forced ``tool_choice`` applies to the first round only, so the model
        can answer in text once it has the results.
        """
        messages = list(request.messages)
        specs = [self._tool_spec(t) for t in request.tools or []]
        calls: list[tuple[ToolCall, Any]] = []
        choice = request.tool_choice
        result: LLMResult | None = None
        for _ in range(max_rounds):
            req = replace(request, messages=messages, tools=specs or None, tool_choice=choice)
            result = await self.llm(agent, req, priority=priority, timeout=timeout)
            if not result.tool_calls:
                break
            messages.append(result.to_message())
            for tc in result.tool_calls:
                out = await self.syscall(agent, "tool", "call", name=tc.name, arguments=tc.arguments)
                calls.append((tc, out))
                messages.append({"role": "tool", "tool_call_id": tc.id, "content": out.content()})
            choice = "auto" if choice not in (None, "none") else choice
        assert result is not None
        return ToolLoopResult(result=result, messages=messages, tool_calls=calls)

    def _tool_spec(self, tool: str | dict[str, Any]) -> dict[str, Any]:
        name = tool if isinstance(tool, str) else tool.get("function", {}).get("name")
        if not isinstance(name, str) or name not in self.services.tools.names():
            raise InvalidRequestError(
                f"tool {name!r} is not registered with the kernel; have {self.services.tools.names()}",
                field="tools",
            )
        spec: dict[str, Any] = self.services.tools.get(name).spec()
        return spec

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Queue length, in-flight per core, context and metrics, as a JSON-able dict."""
        snap = self.metrics.snapshot()
        snap["queued"] = self.dispatcher.queued
        snap["in_flight"] = self.dispatcher.in_flight()
        snap["scheduler"] = self.policy.name
        snap["context"] = {
            "saved": self.context.stats.saved,
            "restored": self.context.stats.restored,
            "held": self.context.stats.held,
            "peak_bytes": self.context.stats.peak_bytes,
            "downgraded": self.context.stats.downgraded,
        }
        return snap


@dataclass(slots=True)
class ToolLoopResult:
    """The final answer of a call-tool loop, the conversation, and each tool call with its result."""

    result: LLMResult
    messages: list[dict[str, Any]]
    tool_calls: list[tuple[ToolCall, Any]] = field(default_factory=list)


class KernelThread:
    """A kernel on its own event loop in a daemon thread: the synchronous form.

    ``with KernelThread(cfg) as kt: kt.call(coro_fn)``. Every call waits with a timeout, so a
    synchronous caller cannot hang even if the loop stalls.
    """

    def __init__(self, config: KernelConfig | None = None, **kernel_kwargs: Any):
        self._config = config
        self._kwargs = kernel_kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="aios-kernel", daemon=True)
        self.kernel: Kernel | None = None

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, *, timeout: float = 120.0) -> KernelThread:
        """Start the loop thread and the kernel on it."""
        self._thread.start()

        async def boot() -> Kernel:
            k = Kernel(self._config, **self._kwargs)
            return await k.start()

        try:
            self.kernel = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(timeout)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self.loop.close()
            raise
        return self

    def call(self, fn: Callable[[Kernel], Coroutine[Any, Any, T]], *, timeout: float | None = None) -> T:
        """Run ``fn(kernel)`` on the kernel's loop and wait for it (bounded by ``timeout``)."""
        if self.kernel is None or not self.kernel.running:
            raise KernelNotRunningError("the kernel thread is not running")
        if threading.current_thread() is self._thread:
            raise AIOSError("a synchronous call from the kernel's own loop would deadlock; use the async API")
        kernel = self.kernel
        fut = asyncio.run_coroutine_threadsafe(fn(kernel), self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            from aios.errors import DeadlineExceededError

            raise DeadlineExceededError(f"no answer within {timeout} s") from None

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop the kernel, then the loop and the thread."""
        if self.kernel is not None and self.loop.is_running():
            kernel = self.kernel
            asyncio.run_coroutine_threadsafe(kernel.stop(), self.loop).result(timeout)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> KernelThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
