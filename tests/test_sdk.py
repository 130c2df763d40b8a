"""The SDK: agent identity per task and thread, sync and async calls, streaming, metrics."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import pytest

from aios import sdk
from aios.backends.sim import SimBackend
from aios.config import BackendConfig, KernelConfig
from aios.errors import AIOSError, InvalidRequestError
from aios.kernel import Kernel, KernelThread
from tests.conftest import user


@pytest.fixture
def default_kernel() -> Iterator[KernelThread]:
    kt = sdk.start_default_kernel(
        KernelConfig(backends=[BackendConfig("sim", "sim", {"capacity": 4, "token_time": 0.001})]),
        entry_points=False,
    )
    yield kt
    sdk.stop_default_kernel()


async def test_concurrent_agents_in_one_loop_never_mix_identities():
    kernel = Kernel(
        KernelConfig(backends=[]),
        backends={"sim": SimBackend(capacity=3, token_time=0.001)},
        entry_points=False,
    )
    seen: dict[str, list[str]] = {}

    async def one_agent(i: int) -> None:
        with sdk.agent(f"agent-{i}"):
            for _ in range(3):
                await asyncio.sleep(random.random() / 1000)
                seen.setdefault(f"agent-{i}", []).append(sdk.current_agent())
                await sdk.llm_chat(user(f"hi {i}"), max_tokens=3)

    async with kernel:
        await asyncio.gather(*(one_agent(i) for i in range(40)))
        stats = sdk.kernel_stats()
    assert all(set(v) == {k} for k, v in seen.items())
    assert {a: m["syscalls"] for a, m in stats["agents"].items()} == {f"agent-{i}": 3 for i in range(40)}
    assert sdk.current_agent() == sdk.DEFAULT_AGENT


def test_threads_using_the_sync_form_keep_their_own_identity(default_kernel: KernelThread):
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with sdk.agent(f"thread-{i}"):
                for _ in range(2):
                    r = sdk.llm_chat_sync(user("x"), max_tokens=4)
                    assert r.text == "t0 t1 t2 t3"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    agents = sdk.kernel_stats()["agents"]
    assert {a: m["syscalls"] for a, m in agents.items()} == {f"thread-{i}": 2 for i in range(8)}


async def test_async_code_without_its_own_kernel_reaches_the_default_kernel(default_kernel: KernelThread):
    with sdk.agent("far-away"):
        r = await sdk.llm_chat(user("x"), max_tokens=2)
    assert r.text == "t0 t1" and "far-away" in sdk.kernel_stats()["agents"]


async def test_a_sync_call_inside_the_kernel_loop_is_refused_instead_of_deadlocking():
    kernel = Kernel(KernelConfig(backends=[]), backends={"sim": SimBackend()}, entry_points=False)
    async with kernel:
        with pytest.raises(AIOSError, match="would block"):
            sdk.llm_chat_sync(user("x"))


async def test_stream_pieces_join_to_the_final_text():
    kernel = Kernel(
        KernelConfig(backends=[]), backends={"sim": SimBackend(token_time=0.001)}, entry_points=False
    )
    async with kernel:
        with sdk.agent("streamer"):
            stream = await sdk.llm_stream(user("x"), max_tokens=12)
            pieces = [p async for p in stream]
    assert stream.result is not None
    assert len(pieces) == 12 and "".join(pieces) == stream.result.text


@pytest.mark.parametrize("name", ["", "x" * 500])
def test_agent_names_are_checked(name: str):
    with pytest.raises(InvalidRequestError) as info, sdk.agent(name):
        pass
    assert info.value.field == "agent"


async def test_streaming_through_the_default_kernel_thread(default_kernel: KernelThread):
    stream = await sdk.llm_stream(user("x"), max_tokens=6, agent="remote-streamer")
    pieces = [p async for p in stream]
    assert stream.result is not None and "".join(pieces) == stream.result.text == "t0 t1 t2 t3 t4 t5"


def test_sync_streaming_yields_pieces_and_closing_early_cancels(default_kernel: KernelThread):
    stream = sdk.llm_stream_sync(user("x"), max_tokens=5, agent="sync-streamer")
    pieces = list(stream)
    assert stream.result is not None and "".join(pieces) == stream.result.text == "t0 t1 t2 t3 t4"
    it = iter(sdk.llm_stream_sync(user("x"), max_tokens=100_000, agent="quitter"))
    assert next(it) == "t0 "
    it.close()
    deadline = time.monotonic() + 10
    while "quitter" not in sdk.kernel_stats()["agents"]:
        assert time.monotonic() < deadline, "the abandoned stream was never cancelled"
        time.sleep(0.01)
    assert sdk.kernel_stats()["agents"]["quitter"]["cancelled"] == 1


async def test_leaving_a_stream_early_cancels_the_syscall():
    kernel = Kernel(
        KernelConfig(backends=[]), backends={"sim": SimBackend(token_time=0.001)}, entry_points=False
    )
    async with kernel:
        stream = await sdk.llm_stream(user("x"), max_tokens=100_000, agent="leaver")
        async for _ in stream:
            break
        for _ in range(100):
            if kernel.metrics.agents.get("leaver"):
                break
            await asyncio.sleep(0.01)
        assert kernel.metrics.agents["leaver"].cancelled == 1


async def test_sync_calls_from_worker_threads_reach_the_kernel_of_this_program():
    kernel = Kernel(
        KernelConfig(backends=[]), backends={"local": SimBackend(name="local")}, entry_points=False
    )
    async with kernel:
        with sdk.agent("worker"):
            r = await asyncio.to_thread(sdk.llm_chat_sync, user("x"), max_tokens=3)
    assert r.backend == "local" and kernel.metrics.agents["worker"].done == 1
