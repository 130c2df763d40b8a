"""Memory, storage, tool and access calls as kernel syscalls: same queue, deadlines, errors, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aios
from aios.backends.sim import SimBackend
from aios.config import KernelConfig
from aios.errors import AccessDeniedError, DeadlineExceededError, InvalidRequestError
from aios.kernel import Kernel
from aios.managers.tools import Tool
from tests.conftest import req


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[Kernel]:
    cfg = KernelConfig(backends=[], data_dir=str(tmp_path))
    async with Kernel(
        cfg, backends={"sim": SimBackend(capacity=1, token_time=0.002)}, entry_points=False
    ) as k:
        yield k


async def test_storage_syscalls_version_and_roll_back(kernel: Kernel):
    v1 = await kernel.syscall("alice", "storage", "write", key="notes", value="first")
    v2 = await kernel.syscall("alice", "storage", "write", key="notes", value="second")
    assert (v1, v2) == (1, 2)
    assert await kernel.syscall("alice", "storage", "read", key="notes") == b"second"
    await kernel.syscall("alice", "storage", "rollback", key="notes", version=1)
    assert await kernel.syscall("alice", "storage", "read", key="notes") == b"first"
    versions = await kernel.syscall("alice", "storage", "versions", key="notes")
    assert [v.version for v in versions] == [1, 2, 3]
    alice = kernel.stats()["agents"]["alice"]
    assert alice["by_kind"] == {"storage": 6}
    # Time is kept per kind too, and adds up to the agent's whole turnaround.
    assert list(alice["seconds_by_kind"]) == ["storage"]
    assert alice["seconds_by_kind"]["storage"] == pytest.approx(alice["turnaround_avg"] * 6)


async def test_another_agents_storage_needs_a_grant(kernel: Kernel):
    await kernel.syscall("alice", "storage", "write", key="diary", value="secret")
    with pytest.raises(AccessDeniedError):
        await kernel.syscall("bob", "storage", "read", owner="alice", key="diary")
    await kernel.syscall("alice", "access", "grant", kind="storage", grantee="bob", ops=["read"])
    assert await kernel.syscall("bob", "storage", "read", owner="alice", key="diary") == b"secret"
    with pytest.raises(AccessDeniedError):  # read was granted, not write
        await kernel.syscall("bob", "storage", "write", owner="alice", key="diary", value="x")
    audit = await kernel.syscall("alice", "access", "audit")
    assert any(r.actor == "bob" and r.decision == "deny" for r in audit)


async def test_memory_syscalls_are_per_agent(kernel: Kernel):
    await kernel.syscall("alice", "memory", "add", text="the launch code is tulip")
    await kernel.syscall("bob", "memory", "add", text="bob likes tulips too")
    hits = await kernel.syscall("alice", "memory", "search", query="tulip")
    assert [h.entry.agent for h in hits] == ["alice"]
    with pytest.raises(AccessDeniedError):
        await kernel.syscall("bob", "memory", "search", owner="alice", query="tulip")


async def test_unknown_syscalls_and_bad_arguments_name_the_problem(kernel: Kernel):
    with pytest.raises(InvalidRequestError) as info:
        await kernel.syscall("a", "storage", "teleport", key="x")
    assert info.value.field == "op" and "storage.read" in str(info.value)
    with pytest.raises(InvalidRequestError) as info:
        await kernel.syscall("a", "storage", "write", key="x", colour="red")
    assert info.value.field == "arguments.colour"
    with pytest.raises(InvalidRequestError) as info:
        await kernel.syscall("a", "tool", "call", name="calculator", arguments={"expression": 5})
    assert info.value.field == "arguments.expression"
    assert await kernel.syscall("a", "tool", "call", name="calculator", arguments={"expression": "2*21"})


async def test_a_tool_limited_to_one_runs_one_at_a_time_while_llm_calls_proceed(kernel: Kernel):
    running = 0
    peak = 0

    async def slow_lookup(query: str) -> str:
        """Look something up slowly.

        Args:
            query: What to look up.
        """
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return query.upper()

    kernel.services.tools.register(Tool.from_function(slow_lookup, concurrency=1))
    tool_calls = [
        kernel.syscall(f"agent-{i}", "tool", "call", name="slow_lookup", arguments={"query": f"q{i}"})
        for i in range(10)
    ]
    llm_calls = [kernel.llm(f"writer-{i}", req("w", 5)) for i in range(5)]
    tools_task = asyncio.gather(*tool_calls)
    llm_results = await asyncio.gather(*llm_calls)
    assert not tools_task.done(), "LLM syscalls finished while the tool queue was still draining"
    results = await tools_task
    assert peak == 1 and [r.value for r in results] == [f"Q{i}" for i in range(10)]
    assert all(r.usage.completion_tokens == 5 for r in llm_results)


async def test_a_syscall_deadline_covers_waiting_for_the_tool(kernel: Kernel):
    async def stuck() -> str:
        """Never returns."""
        await asyncio.sleep(3600)
        return "never"

    kernel.services.tools.register(Tool.from_function(stuck, concurrency=1, timeout=3600))
    with pytest.raises(DeadlineExceededError):
        await kernel.syscall("a", "tool", "call", name="stuck", timeout=0.1)
    assert kernel.metrics.errors["DeadlineExceededError"] == 1


async def test_the_file_tool_works_on_the_calling_agents_storage(kernel: Kernel):
    out = await kernel.syscall(
        "alice", "tool", "call", name="file", arguments={"action": "write", "path": "a.txt", "content": "hi"}
    )
    assert out.ok, out
    assert await kernel.syscall("alice", "storage", "read", key="a.txt") == b"hi"
    with pytest.raises(AccessDeniedError):
        await kernel.syscall("bob", "storage", "read", owner="alice", key="a.txt")


@pytest.mark.model
async def test_agents_on_the_real_model_use_memory_storage_and_a_tool(tmp_path: Path):
    cfg = KernelConfig(data_dir=str(tmp_path), scheduler="fair", slice_tokens=8)

    async def agent(i: int) -> None:
        with aios.agent(f"clerk-{i}"):
            loop = await aios.llm_call_tools(
                [{"role": "user", "content": f"Compute {i + 2} * 7 with the calculator."}],
                tools=["calculator"],
                tool_choice={"type": "function", "function": {"name": "calculator"}},
                max_tokens=64,  # strings are bounded by the grammar so the call closes within this
                max_rounds=1,
            )
            (call, result), *_ = loop.tool_calls
            # The call is well-formed whatever the 135M model writes; the kernel ran the tool, which
            # may answer with an error result if the expression the model chose is not arithmetic.
            assert call.name == "calculator" and "expression" in call.parsed_arguments()
            assert result.ok or result.error is not None
            await aios.syscall("storage", "write", key="result", value=result.content())
            await aios.syscall("memory", "add", text=f"The calculator said {result.content()}.")

    async with Kernel(cfg, entry_points=False) as k:
        await asyncio.gather(*(agent(i) for i in range(3)))
        stored = [await k.syscall(f"clerk-{i}", "storage", "read", key="result") for i in range(3)]
        hits = [await k.syscall(f"clerk-{i}", "memory", "search", query="calculator") for i in range(3)]
        stats = k.stats()["agents"]
    for i in range(3):
        kinds = stats[f"clerk-{i}"]["by_kind"]
        assert kinds["llm"] >= 1 and kinds["tool"] == 1 and kinds["storage"] >= 2 and kinds["memory"] >= 2
        assert stored[i] and hits[i][0].entry.agent == f"clerk-{i}"


async def test_stopping_the_kernel_ends_running_tool_syscalls_with_a_clear_error(tmp_path: Path):
    from aios.errors import CancelledError

    async def forever() -> str:
        """Runs until cancelled."""
        await asyncio.sleep(3600)
        return "never"

    kernel = Kernel(
        KernelConfig(backends=[], data_dir=str(tmp_path / "fresh" / "dir")),
        backends={"sim": SimBackend()},
        entry_points=False,
    )
    await kernel.start()
    kernel.services.tools.register(Tool.from_function(forever, timeout=3600))
    call = asyncio.ensure_future(kernel.syscall("a", "tool", "call", name="forever"))
    await asyncio.sleep(0.05)
    await kernel.stop()
    with pytest.raises(CancelledError, match="shutting down"):
        await asyncio.wait_for(call, 5)
