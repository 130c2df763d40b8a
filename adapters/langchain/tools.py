"""Tools: every run of a LangChain tool becomes one tool syscall named by the tool's name.

Wrapped: ``BaseTool.run`` and ``BaseTool.arun`` (what ``invoke``/``ainvoke``, agents and executors
call), plus ``StructuredTool.ainvoke`` and ``Tool.ainvoke``, whose fallback for a tool without a
coroutine hands ``invoke`` to a worker thread and so never reaches ``arun``. One run can pass
several of these (``ainvoke`` → ``arun``, or the worker thread's ``run``); a context variable marks
the run as already inside a syscall, so only the outermost one counts.

The tool's own code keeps the caller's context variables (LangChain's run config and tracing
parents, the agent identity) and, when async, runs on the caller's event loop: the kernel queues,
limits and records it, but loop-bound objects of the tool (clients, queues) stay usable.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aios import sdk
from aios.adapters.langchain.convert import DEFAULT_AGENT

# Set inside the context a tool syscall runs its tool in (per task/thread, never process-wide).
_inside_tool: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "aios_langchain_inside_tool", default=False
)


def _tool_name(tool: Any) -> str:
    name = getattr(tool, "name", None)
    return name if isinstance(name, str) and name else type(tool).__name__


def _marked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    _inside_tool.set(True)  # in the throwaway copy of the caller's context the tool runs in
    return fn(*args, **kwargs)


def wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseTool.run`` as a tool syscall (the tool runs in a kernel worker thread, caller's context)."""

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _inside_tool.get():
            return original(self, *args, **kwargs)
        ctx = contextvars.copy_context()
        return sdk.tool_syscall_sync(
            _tool_name(self),
            lambda: ctx.run(_marked, original, self, *args, **kwargs),
            agent=sdk.current_agent(default=DEFAULT_AGENT),
        )

    return run


async def run_as_tool_syscall(name: str, make: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``make()`` as tool syscall ``name``, on this loop and in this task's context."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()

    async def marked() -> Any:
        _inside_tool.set(True)
        return await make()

    async def in_caller_context() -> Any:
        return await asyncio.get_running_loop().create_task(marked(), context=ctx)

    async def call() -> Any:
        if asyncio.get_running_loop() is loop:
            return await in_caller_context()
        # The default kernel runs on its own loop: hand the tool back to the caller's loop (free:
        # it is awaiting this syscall). Cancelling the syscall cancels the tool's task there.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(in_caller_context(), loop))

    return await sdk.tool_syscall(name, call, agent=sdk.current_agent(default=DEFAULT_AGENT))


def wrap_async(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``BaseTool.arun`` or a tool class's ``ainvoke`` as a tool syscall."""

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _inside_tool.get():
            return await original(self, *args, **kwargs)
        return await run_as_tool_syscall(_tool_name(self), lambda: original(self, *args, **kwargs))

    return wrapper
