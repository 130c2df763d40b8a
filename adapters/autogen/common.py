"""What both AutoGen adapters share: who is speaking, and tool syscalls that run where they were called.

Identity: an explicit ``with aios.sdk.agent(...)`` scope always wins; otherwise the AutoGen agent
whose turn it is (kept in a ``ContextVar`` set for the duration of that agent's reply), otherwise
the adapter's fallback name.

Tool syscalls: the framework's own tool code must run on the caller's event loop and in its
context (tools hold loop-bound resources, cancellation tokens link futures of that loop, and
``sdk.agent`` scopes live in the context), while the kernel that records, limits and times it may
run on another loop (the process-default kernel's thread). ``tool_async`` bridges the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aios import sdk

T = TypeVar("T")

#: The AutoGen agent whose reply is being produced in this task or thread.
speaker: contextvars.ContextVar[str | None] = contextvars.ContextVar("aios_autogen_speaker", default=None)


def framework(module: str) -> Any:
    """Import a framework module lazily, typed as ``Any`` (the framework is absent where mypy runs)."""
    return importlib.import_module(module)


def agent_name(fallback: str, owner: object = None) -> str:
    """A syscall's identity: the user's scope, else ``owner.name``, else the speaker, else ``fallback``."""
    name = getattr(owner, "name", None)
    if not isinstance(name, str) or not name:
        name = speaker.get() or fallback
    who: str = sdk.current_agent(default=name)
    return who


async def speaking(name: str, steps: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """Re-yield ``steps`` (an agent's reply stream) with ``speaker`` set to ``name`` inside each step.

    The variable is set and reset within one step, so it never leaks into the consumer between
    items, and a generator abandoned mid-way leaves nothing to reset.
    """
    try:
        while True:
            token = speaker.set(name)
            try:
                item = await anext(steps)
            except StopAsyncIteration:
                return
            finally:
                speaker.reset(token)
            yield item
    finally:
        aclose = getattr(steps, "aclose", None)
        if aclose is not None:
            await aclose()


class Unsuccessful(Exception):
    """Raised inside a tool syscall whose tool reported failure in its return value.

    The kernel then records the syscall as failed; the adapter catches it and hands ``value``
    back to the framework unchanged, as the framework expects.
    """

    def __init__(self, value: Any):
        super().__init__("the tool reported a failure")
        self.value = value


def tool_sync(name: str, fn: Callable[..., T], *args: Any, agent: str, **kwargs: Any) -> T:
    """Run the synchronous ``fn`` as a tool syscall on the default kernel, in the caller's context.

    Inside, ``sdk.current_agent()`` is ``agent``, so syscalls the tool makes itself count for the
    same agent as the tool call.
    """

    def as_agent() -> T:
        with sdk.agent(agent):
            return fn(*args, **kwargs)

    call = functools.partial(contextvars.copy_context().run, as_agent)
    try:
        result: T = sdk.tool_syscall_sync(name or "<unnamed>", call, agent=agent)
    except Unsuccessful as failed:
        return failed.value  # type: ignore[no-any-return]
    return result


async def tool_async(name: str, make: Callable[[], Awaitable[T]], *, agent: str) -> T:
    """Run the coroutine ``make()`` as a tool syscall; it runs on this loop and in this context.

    Inside, ``sdk.current_agent()`` is ``agent`` (as for ``tool_sync``).
    """
    home = asyncio.get_running_loop()
    ctx = contextvars.copy_context()

    async def as_agent() -> T:
        with sdk.agent(agent):
            return await make()

    async def run() -> T:
        if asyncio.get_running_loop() is home:
            return await as_agent()
        return await _run_on(home, ctx, as_agent)

    try:
        result: T = await sdk.tool_syscall(name or "<unnamed>", run, agent=agent)
    except Unsuccessful as failed:
        return failed.value  # type: ignore[no-any-return]
    return result


async def _run_on(
    home: asyncio.AbstractEventLoop, ctx: contextvars.Context, make: Callable[[], Awaitable[T]]
) -> T:
    """Await ``make()`` run as a task on ``home`` (another thread's loop); cancelling this cancels it."""
    here = asyncio.get_running_loop()
    done: asyncio.Future[T] = here.create_future()
    # Touched only on ``home``'s thread: the task once started, or the order not to start it.
    state: dict[str, Any] = {}

    def settle(task: asyncio.Task[T]) -> None:
        if done.done():
            return
        if task.cancelled():
            done.cancel()
        elif (exc := task.exception()) is not None:
            done.set_exception(exc)
        else:
            done.set_result(task.result())

    def relay(task: asyncio.Task[T]) -> None:
        # The kernel's loop may be gone by the time the tool ends; nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            here.call_soon_threadsafe(settle, task)

    async def body() -> T:
        return await make()

    def start() -> None:
        if state.get("cancelled"):
            return
        task = home.create_task(body(), context=ctx.copy())
        state["task"] = task
        task.add_done_callback(relay)

    def stop() -> None:
        state["cancelled"] = True
        task = state.get("task")
        if task is not None:
            task.cancel()

    home.call_soon_threadsafe(start)
    try:
        return await done
    except asyncio.CancelledError:
        with contextlib.suppress(RuntimeError):
            home.call_soon_threadsafe(stop)
        raise
