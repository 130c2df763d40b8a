"""Tools under the patch: one tool syscall per run, the caller's context, loop and exceptions kept."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable

import pytest

pytest.importorskip(
    "langchain_core", reason="the langchain adapter tests need langchain-core (envs/langchain.lock)"
)

from langchain_core.messages import ToolMessage
from langchain_core.tools import Tool, ToolException, tool

from aios import sdk
from aios.backends.scripted import ScriptedBackend
from aios.kernel import Kernel

pytestmark = pytest.mark.usefixtures("lc_patched")

Scripted = Callable[..., ScriptedBackend]
LocalScripted = Callable[..., tuple[Kernel, ScriptedBackend]]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def tool_counts() -> dict[str, int]:
    return {name: a["by_kind"].get("tool", 0) for name, a in sdk.kernel_stats()["agents"].items()}


def test_invoking_a_tool_with_a_models_tool_call_is_one_tool_syscall(default_scripted: Scripted):
    default_scripted()
    seen: list[tuple[int, int]] = []

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        seen.append((a, b))
        return a * b

    out = multiply.invoke({"name": "multiply", "args": {"a": 3, "b": 4}, "id": "call_1", "type": "tool_call"})
    assert isinstance(out, ToolMessage)
    assert (out.content, out.tool_call_id, out.name) == ("12", "call_1", "multiply")
    assert seen == [(3, 4)]
    stats = sdk.kernel_stats()["agents"]["langchain"]
    assert stats["by_kind"] == {"tool": 1}
    assert stats["done"] == 1


def test_a_tool_runs_with_the_callers_context_and_identity(default_scripted: Scripted):
    default_scripted()
    seen: list[str] = []

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        seen.append(request_id.get())
        return key.upper()

    token = request_id.set("req-42")
    try:
        with sdk.agent("librarian"):
            assert lookup.run({"key": "abc"}) == "ABC"
    finally:
        request_id.reset(token)
    assert seen == ["req-42"]
    assert tool_counts() == {"librarian": 1}


async def test_ainvoke_of_a_sync_tool_is_counted_once(default_scripted: Scripted):
    default_scripted()
    threads: list[str] = []

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        threads.append(threading.current_thread().name)
        return a * b

    # StructuredTool.ainvoke hands a tool without a coroutine to invoke() (so run()) in a worker
    # thread, and arun() of such a tool runs _run in one: each is still one syscall.
    assert await multiply.ainvoke({"a": 6, "b": 7}) == 42
    assert await multiply.arun({"a": 2, "b": 2}) == 4
    assert len(threads) == 2
    assert tool_counts() == {"langchain": 2}


async def test_an_async_tool_runs_on_the_callers_loop_under_the_default_kernel(default_scripted: Scripted):
    default_scripted()
    loops: list[asyncio.AbstractEventLoop] = []

    @tool
    async def fetch(url: str) -> str:
        """Fetch a page."""
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return f"<html>{url}</html>"

    with sdk.agent("crawler"):
        out = await fetch.ainvoke({"url": "x"})
    assert out == "<html>x</html>"
    assert loops == [asyncio.get_running_loop()]
    assert tool_counts() == {"crawler": 1}


def test_a_tool_error_reaches_the_caller_unchanged_and_the_syscall_fails(default_scripted: Scripted):
    default_scripted()

    @tool
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    with pytest.raises(ZeroDivisionError):
        divide.invoke({"a": 1, "b": 0})
    stats = sdk.kernel_stats()["agents"]["langchain"]
    assert (stats["syscalls"], stats["failed"]) == (1, 1)


def test_a_handled_tool_exception_comes_back_as_the_tools_answer(default_scripted: Scripted):
    default_scripted()

    def refuse(query: str) -> str:
        raise ToolException(f"no access to {query}")

    search = Tool(name="search", description="Search.", func=refuse, handle_tool_error=True)
    assert search.invoke("secrets") == "no access to secrets"
    assert tool_counts() == {"langchain": 1}


async def test_a_classic_tool_without_coroutine_is_counted_once_from_async(local_scripted: LocalScripted):
    kernel, _ = local_scripted()
    search = Tool(name="search", description="Search.", func=lambda q: f"found {q}")
    async with kernel:
        assert await search.ainvoke("cats") == "found cats"
        counts = tool_counts()
    assert counts == {"langchain": 1}


@pytest.mark.parametrize("where", ["default kernel", "kernel in this loop"])
async def test_cancelling_the_caller_cancels_an_async_tool(
    where: str, default_scripted: Scripted, local_scripted: LocalScripted
):
    started, cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def wait_forever(x: int) -> int:
        """Wait for something that never comes."""
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return x

    async def run_and_cancel() -> None:
        task = asyncio.create_task(wait_forever.ainvoke({"x": 1}))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(cancelled.wait(), 30)

    if where == "default kernel":
        default_scripted()
        await run_and_cancel()
    else:
        kernel, _ = local_scripted()
        async with kernel:
            await run_and_cancel()
            assert sdk.kernel_stats()["agents"]["langchain"]["cancelled"] == 1
