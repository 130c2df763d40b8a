"""The remote SDK: the same SDK calls, against a kernel server instead of an in-process kernel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from aios import sdk
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.errors import (
    AccessDeniedError,
    DeadlineExceededError,
    InvalidRequestError,
    KernelNotRunningError,
    KeyNotFoundError,
)
from aios.managers.agent_memory import MemoryEntry
from aios.managers.storage_backend import VersionInfo
from aios.managers.tools import ToolResult
from aios.remote import RemoteConnection
from aios.server import ServerThread
from aios.wire import AuthenticationError
from tests.server.conftest import TOKENS, ServeFactory, free_port

pytestmark = pytest.mark.timeout(60)
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def remote(server: ServerThread) -> Iterator[RemoteConnection]:
    """The process-default SDK target is the test server, as the team token."""
    conn = sdk.connect(server.url, token=TOKENS["team"])
    yield conn
    sdk.stop_default_kernel()


async def test_async_calls_run_on_the_server_as_the_scoped_agent(remote: RemoteConnection):
    async def one(i: int) -> str:
        with sdk.agent(f"team-{i}"):
            r = await sdk.llm_chat(USER, max_tokens=2)
            return r.text

    assert await asyncio.gather(*(one(i) for i in range(6))) == ["t0 t1"] * 6
    r = await sdk.llm_chat(USER, max_tokens=3)  # no scope: the token's own agent
    assert (r.text, r.usage.completion_tokens, r.backend, r.segments) == ("t0 t1 t2", 3, "sim", ["t0 t1 t2"])
    agents = sdk.kernel_stats()["agents"]
    assert {a: m["by_kind"] for a, m in agents.items()} == {
        **{f"team-{i}": {"llm": 1} for i in range(6)},
        "team": {"llm": 1},
    }


def test_sync_calls_from_threads_keep_their_identity(remote: RemoteConnection):
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with sdk.agent(f"team-t{i}"):
                assert sdk.llm_chat_sync(USER, max_tokens=2).text == "t0 t1"
                assert sdk.syscall_sync("storage", "write", key="k", value=f"v{i}") == 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    agents = sdk.kernel_stats()["agents"]
    assert {a: m["by_kind"] for a, m in agents.items()} == {
        f"team-t{i}": {"llm": 1, "storage": 1} for i in range(5)
    }


async def test_streams_arrive_piece_by_piece_async_and_sync(remote: RemoteConnection):
    stream = await sdk.llm_stream(USER, max_tokens=4)
    pieces = [p async for p in stream]
    assert pieces == ["t0 ", "t1 ", "t2 ", "t3"]
    assert stream.result is not None and stream.result.usage.completion_tokens == 4
    assert list(await asyncio.to_thread(lambda: list(sdk.llm_stream_sync(USER, max_tokens=2)))) == [
        "t0 ",
        "t1",
    ]


async def test_syscall_results_come_back_as_the_same_types(remote: RemoteConnection):
    with sdk.agent("team-a"):
        assert await sdk.syscall("storage", "write", key="blob", value=b"\x00\xff") == 1
        assert await sdk.syscall("storage", "read", key="blob") == b"\x00\xff"
        versions = await sdk.syscall("storage", "versions", key="blob")
        assert isinstance(versions[0], VersionInfo) and versions[0].writer == "team-a"
        entry_id = await sdk.syscall("memory", "add", text="the cat sat", metadata={"n": 1})
        entry = await sdk.syscall("memory", "get", entry_id=entry_id)
        assert isinstance(entry, MemoryEntry) and (entry.text, entry.metadata) == ("the cat sat", {"n": 1})
        assert isinstance(entry.history, tuple)
        out = await sdk.syscall("tool", "call", name="calculator", arguments={"expression": "6*7"})
        assert isinstance(out, ToolResult) and out.ok and out.value == 42 and out.content() == "42"
        with pytest.raises(KeyNotFoundError) as missing:
            await sdk.syscall("storage", "read", key="nope")
        assert missing.value.key == "nope" and missing.value.owner == "team-a"
        with pytest.raises(InvalidRequestError) as bad:
            await sdk.syscall("storage", "read", key=7)
        assert bad.value.field == "args.key"
        with pytest.raises(AccessDeniedError):
            await sdk.syscall("storage", "read", key="blob", owner="alice")


async def test_a_framework_tool_runs_here_inside_a_tool_syscall_of_the_server(remote: RemoteConnection):
    ran_in: list[str] = []

    def add(a: int, b: int) -> int:
        ran_in.append(threading.current_thread().name)
        return a + b

    async def boom() -> None:
        raise ZeroDivisionError("no")

    with sdk.agent("team-tools"):
        assert await sdk.tool_syscall("add", add, 2, 3) == 5
        with pytest.raises(ZeroDivisionError, match="no"):
            await sdk.tool_syscall("boom", boom)
        with pytest.raises(DeadlineExceededError):
            await sdk.tool_syscall("slow", asyncio.sleep, 5, timeout=0.2)
        assert await asyncio.to_thread(sdk.tool_syscall_sync, "add", add, 1, 1) == 2
    assert ran_in and all(name != "aios-server" for name in ran_in)
    m = sdk.kernel_stats()["agents"]["team-tools"]
    assert (m["by_kind"], m["done"], m["failed"]) == ({"tool": 4}, 2, 2)


async def test_the_call_tool_path_runs_kernel_tools_on_the_server(serve: ServeFactory):
    backend = ScriptedBackend(tool_call("calculator", {"expression": "2+2"}), text("four"))
    srv = serve(backends={"scripted": backend})
    with sdk.connect(srv.url, token=TOKENS["alice"], default=False) as conn:
        loop = await sdk.llm_call_tools(USER, tools=["calculator"], kernel=conn)
    assert loop.result.text == "four"
    ((tc, out),) = loop.tool_calls
    assert tc.name == "calculator" and isinstance(out, ToolResult) and out.value == 4
    assert loop.messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "4"}
    backend.check()


def test_the_environment_points_the_default_target_at_a_server(server: ServerThread):
    script = textwrap.dedent(
        """
        import asyncio, threading
        from aios import sdk
        print(sdk.llm_chat_sync([{"role": "user", "content": "x"}], max_tokens=2).text)
        print(asyncio.run(sdk.syscall("storage", "write", key="env", value="1")))
        print(sorted(t.name for t in threading.enumerate() if t.name.startswith("aios")))
        """
    )
    env = {"AIOS_KERNEL_URL": server.url, "AIOS_KERNEL_TOKEN": TOKENS["bob"], "PATH": ""}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["t0 t1", "1", "['aios-remote']"]  # no in-process kernel


def test_connect_checks_the_token_and_the_address_at_once(server: ServerThread):
    with pytest.raises(AuthenticationError):
        sdk.connect(server.url, token="tok-wrong-0123456789abcdef", default=False)
    with pytest.raises(KernelNotRunningError, match="cannot reach"):
        sdk.connect(f"http://127.0.0.1:{free_port()}", token="x" * 20, default=False)
    with pytest.raises(InvalidRequestError):
        sdk.connect("ftp://example", default=False)


def test_closing_the_default_connection_forgets_it(server: ServerThread):
    conn = sdk.connect(server.url, token=TOKENS["alice"])
    conn.close()
    with pytest.raises(sdk.AIOSError, match="no kernel is running"):
        sdk.kernel_stats()
