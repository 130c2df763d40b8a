"""The tool manager: tools whose schemas come from type hints, validated arguments, caps and timeouts.

Which failures raise and which become an error ``ToolResult``:

- *Caller bugs raise* (the kernel fails the syscall): an unknown tool name
  (``InvalidRequestError(field="name")``), arguments that are not a JSON object or break the schema
  (``InvalidRequestError(field="arguments.<path>")``), and the syscall's own deadline passing while
  it waits or runs (``DeadlineExceededError``). A model's bad arguments are a caller bug here on
  purpose: the agent loop that turned the model's output into a call catches the
  ``InvalidRequestError`` and feeds its message (which names the argument) back to the model.
- *What the tool did returns* ``ToolResult(ok=False, error=ToolError(type, message))``, to be fed
  back to the model: the tool raised (``type`` is the exception's class name), ran past its
  ``timeout`` (``ToolTimeoutError``), or returned something that is not JSON (``ToolResultError``).

A sync tool runs in a worker thread. Python cannot stop a thread, so a sync tool that times out
keeps its concurrency slot (and counts as in flight) until its thread really returns: the cap
bounds what runs, not only what is awaited.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, overload

import pluggy

from aios.clock import Clock, MonotonicClock
from aios.errors import ConfigError, DeadlineExceededError, InvalidRequestError
from aios.managers.tool_schema import (
    Schema,
    parse_arguments,
    parse_docstring,
    signature_schema,
    validate_value,
)

DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = 30.0
#: How long a timed-out async tool gets to finish its cleanup before the caller is answered anyway.
CANCEL_GRACE_S = 1.0
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The agent whose call is running; set around every tool call, visible in threads too.
_calling_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar("aios_tool_agent", default=None)


def calling_agent() -> str | None:
    """The agent whose tool call is running in this context (None outside a tool call)."""
    return _calling_agent.get()


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable the model may use: name, description, JSON schema of parameters, caps."""

    name: str
    description: str
    parameters: Schema
    fn: Callable[..., Any] = field(repr=False)
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    #: Turns validated JSON values into the Python values the function expects (enums, floats).
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"tool name {self.name!r} must match [A-Za-z0-9_-]{{1,64}}", field="name")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ConfigError(f"tool {self.name!r} needs a description (a docstring)", field="description")
        if self.parameters.get("type") != "object" or not isinstance(
            self.parameters.get("properties", {}), dict
        ):
            raise ConfigError(f"tool {self.name!r}: parameters must be an object schema", field="parameters")
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise ConfigError(f"tool {self.name!r}: concurrency must be an int >= 1", field="concurrency")
        if not isinstance(self.timeout, int | float) or not self.timeout > 0:
            raise ConfigError(f"tool {self.name!r}: timeout must be positive", field="timeout")
        if not callable(self.fn):
            raise ConfigError(f"tool {self.name!r}: fn is not callable", field="fn")

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Tool:
        """A tool whose schema comes from ``fn``'s type hints and Google-style docstring."""
        tool_name = name or str(getattr(fn, "__name__", ""))
        summary, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
        parameters, convert = signature_schema(fn, tool_name, arg_docs)
        return cls(
            name=tool_name,
            description=description or summary,
            parameters=parameters,
            fn=fn,
            concurrency=concurrency,
            timeout=timeout,
            convert=convert,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, caps or timeout)."""
        return self.fn(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function (else it runs in a worker thread)."""
        return inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            getattr(self.fn, "__call__", None)  # noqa: B004 - async callable objects count too
        )

    async def call(
        self, arguments: Mapping[str, Any] | str | None, *, agent: str = "", deadline: float | None = None
    ) -> ToolResult:
        """Validate and run this tool once, outside any manager (its timeout holds, no shared cap)."""
        return await ToolManager([self]).call(self.name, arguments, agent=agent, deadline=deadline)

    def spec(self) -> dict[str, Any]:
        """This tool in the OpenAI ``tools`` list shape."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
        """Model-produced arguments checked against the schema and converted for the function."""
        args = parse_arguments(self.name, arguments)
        validate_value(args, self.parameters, "arguments")
        return self.convert(args) if self.convert is not None else args


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: ``@tool`` or ``@tool(concurrency=1, timeout=5)`` turns a function into a ``Tool``."""

    def make(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(
            f, name=name, description=description, concurrency=concurrency, timeout=timeout
        )

    return make(fn) if fn is not None else make


@dataclass(frozen=True, slots=True)
class ToolError:
    """Why a tool call failed: the error's type name and message."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call: a JSON value or an error, plus how long it waited and ran."""

    name: str
    ok: bool
    value: Any = None
    error: ToolError | None = None
    #: Seconds spent waiting for a free concurrency slot.
    queued_s: float = 0.0
    #: Seconds the tool ran (until it finished or was abandoned at its timeout).
    run_s: float = 0.0

    def content(self) -> str:
        """The text for the ``tool`` message that reports this result to the model."""
        if self.ok:
            return self.value if isinstance(self.value, str) else json.dumps(self.value)
        return f"Error: {self.error}"


@dataclass(slots=True)
class ToolMetrics:
    """Counters of one tool since it was registered."""

    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    #: Calls refused before running (invalid arguments).
    rejected: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    total_time: float = 0.0


@dataclass(slots=True)
class _Entry:
    tool: Tool
    semaphore: asyncio.Semaphore
    metrics: ToolMetrics = field(default_factory=ToolMetrics)


class ToolManager:
    """Registered tools; ``call`` validates, waits for a slot, runs with a timeout, and reports."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = (), *, clock: Clock | None = None):
        self._entries: dict[str, _Entry] = {}
        self._clock = clock or MonotonicClock()
        for t in tools:
            self.register(t)

    def register(self, t: Tool | Callable[..., Any]) -> Callable[[], None]:
        """Add a tool (a function is converted); returns a callable that removes exactly this one."""
        new = t if isinstance(t, Tool) else Tool.from_function(t)
        if new.name in self._entries:
            raise ConfigError(f"a tool named {new.name!r} is already registered", field="name")
        entry = _Entry(new, asyncio.Semaphore(new.concurrency))
        self._entries[new.name] = entry

        def undo() -> None:
            # Only if still ours: an undo must never remove a tool registered later under the name.
            if self._entries.get(new.name) is entry:
                del self._entries[new.name]

        return undo

    def register_many(self, tools: Iterable[Tool | Callable[..., Any]]) -> Callable[[], None]:
        """Register several tools, all or none; returns one undo for all of them."""
        undos: list[Callable[[], None]] = []
        try:
            for t in tools:
                undos.append(self.register(t))
        except BaseException:
            for undo in reversed(undos):
                undo()
            raise

        def undo_all() -> None:
            for undo in reversed(undos):
                undo()

        return undo_all

    def unregister(self, name: str) -> Tool:
        """Remove a tool by name and return it; calls already running finish normally."""
        entry = self._lookup(name, None)
        del self._entries[name]
        return entry.tool

    def get(self, name: str) -> Tool:
        """The tool registered under ``name`` (``InvalidRequestError`` if none)."""
        return self._lookup(name, None).tool

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._entries)

    def list_tools(self) -> list[dict[str, Any]]:
        """OpenAI tool specs of every registered tool, sorted by name."""
        return [self._entries[n].tool.spec() for n in self.names()]

    def metrics(self) -> dict[str, ToolMetrics]:
        """A copy of each tool's counters."""
        return {n: replace(e.metrics) for n, e in self._entries.items()}

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None,
        *,
        agent: str,
        deadline: float | None = None,
    ) -> ToolResult:
        """Run a tool for ``agent``; ``deadline`` is on the manager's clock (see module doc for errors)."""
        entry = self._lookup(name, agent)
        t = entry.tool
        try:
            kwargs = t.validate(arguments)
        except InvalidRequestError as exc:
            entry.metrics.rejected += 1
            raise InvalidRequestError(exc.message, field=exc.field, agent=agent) from None
        start = time.monotonic()
        try:
            async with asyncio.timeout(self._remaining(name, agent, deadline)):
                await entry.semaphore.acquire()
        except TimeoutError:
            raise DeadlineExceededError(
                f"tool {name!r}: the deadline passed while waiting for a free slot "
                f"(concurrency {t.concurrency})",
                agent=agent,
            ) from None
        queued = time.monotonic() - start
        try:
            remaining = self._remaining(name, agent, deadline)
        except DeadlineExceededError:
            entry.semaphore.release()
            raise
        limit = t.timeout if remaining is None else min(t.timeout, remaining)
        m = entry.metrics
        m.calls += 1
        m.in_flight += 1
        m.max_in_flight = max(m.max_in_flight, m.in_flight)
        run_start = time.monotonic()
        try:
            value = await _run(t, kwargs, agent, limit, functools.partial(_release, entry, run_start))
        except _Expired:
            m.timeouts += 1
            if limit < t.timeout:
                m.errors += 1
                raise DeadlineExceededError(
                    f"tool {name!r}: the deadline passed while it ran", agent=agent
                ) from None
            return self._failed(
                entry,
                run_start,
                queued,
                "ToolTimeoutError",
                f"tool {name!r} did not finish within {limit:g} s",
            )
        except (Exception, SystemExit) as exc:
            return self._failed(entry, run_start, queued, type(exc).__name__, str(exc))
        try:
            value = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as exc:
            return self._failed(entry, run_start, queued, "ToolResultError", f"not JSON-serializable: {exc}")
        return ToolResult(name, True, value, None, queued, time.monotonic() - run_start)

    def _failed(self, entry: _Entry, run_start: float, queued: float, kind: str, message: str) -> ToolResult:
        entry.metrics.errors += 1
        return ToolResult(
            entry.tool.name, False, None, ToolError(kind, message), queued, time.monotonic() - run_start
        )

    def _remaining(self, name: str, agent: str, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - self._clock.now()
        if left <= 0:
            raise DeadlineExceededError(f"tool {name!r}: the deadline has passed", agent=agent)
        return left

    def _lookup(self, name: str, agent: str | None) -> _Entry:
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            available = ", ".join(self.names()) or "none"
            raise InvalidRequestError(
                f"unknown tool {name!r}; available: {available}", field="name", agent=agent
            )
        return entry


def load_plugin_tools(pm: pluggy.PluginManager) -> list[Tool]:
    """Tools returned by every plugin's ``aios_tools()`` hook (none if no plugin implements it)."""
    hook = getattr(pm.hook, "aios_tools", None)
    if hook is None:
        return []
    found: list[Tool] = []
    for impl in hook.get_hookimpls():
        items = impl.function()
        if not isinstance(items, list | tuple):
            raise ConfigError(
                f"plugin {impl.plugin_name!r}: aios_tools() must return a list", field="aios_tools"
            )
        for item in items:
            if isinstance(item, Tool):
                found.append(item)
            elif callable(item):
                found.append(Tool.from_function(item))
            else:
                raise ConfigError(
                    f"plugin {impl.plugin_name!r}: aios_tools() returned {item!r}, not a Tool or function",
                    field="aios_tools",
                )
    return found


class _Expired(Exception):
    """The tool ran past its time limit (private: a tool's own TimeoutError must not look like this)."""


class ToolCancelledError(Exception):
    """The tool cancelled itself (its own task raised ``CancelledError``); reported, not propagated."""


async def _run(t: Tool, kwargs: dict[str, Any], agent: str, limit: float, release: Callable[[], None]) -> Any:
    token = _calling_agent.set(agent)
    try:
        fut: asyncio.Future[Any]
        if t.is_async:
            fut = asyncio.ensure_future(t.fn(**kwargs))
        else:
            call = functools.partial(contextvars.copy_context().run, t.fn, **kwargs)
            fut = asyncio.get_running_loop().run_in_executor(None, call)
    except BaseException:
        release()  # nothing started, so nothing else will free the slot
        raise
    finally:
        _calling_agent.reset(token)

    def finished(f: asyncio.Future[Any]) -> None:
        # The slot is freed when the work really stops, not when the caller stops waiting.
        release()
        if not f.cancelled():
            f.exception()  # retrieved, so an abandoned call's error is not reported as lost

    fut.add_done_callback(finished)
    try:
        # wait(), not wait_for(): a tool that swallows cancellation must still not hang its caller.
        done, _ = await asyncio.wait({fut}, timeout=limit)
    except asyncio.CancelledError:
        fut.cancel()
        raise
    if not done:
        fut.cancel()
        if t.is_async:
            # Let a well-behaved coroutine run its cleanup, so its slot is free when we report.
            await asyncio.wait({fut}, timeout=CANCEL_GRACE_S)
        raise _Expired
    if fut.cancelled():
        # Not our caller's cancellation (that arrives above), so it must not look like one.
        raise ToolCancelledError(f"tool {t.name!r} was cancelled from inside")
    return fut.result()


def _release(entry: _Entry, run_start: float) -> None:
    entry.metrics.in_flight -= 1
    entry.metrics.total_time += time.monotonic() - run_start
    entry.semaphore.release()
