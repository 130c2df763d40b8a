"""The no-kernel wire for framework agents: the loopback relay and ``framework_support.endpoint``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from aios import sdk
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.benchmarks import framework_support
from aios.benchmarks.core import Episode
from aios.benchmarks.framework_support import (
    UNUSED_URL,
    client_error,
    endpoint,
    episode_tools,
    run_on_loop,
    tool_runner,
)
from aios.benchmarks.frameworks import AgentSpec
from aios.benchmarks.relay import relay
from aios.benchmarks.runtime import CountingRuntime, DirectLLM
from aios.config import KernelConfig
from aios.errors import BackendError, DeadlineExceededError, InvalidRequestError
from aios.kernel import Kernel
from aios.managers.tools import Tool

pytestmark = pytest.mark.timeout(60)

TOOLS = [
    {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}
]


def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)


async def test_a_framework_call_through_the_relay_is_one_counted_backend_call():
    backend = ScriptedBackend(tool_call("add", {"a": 1}, said="adding", call_id="c7"))
    runtime = CountingRuntime(DirectLLM(backend))
    async with relay(runtime, "agent-1", model="m") as ep, client(ep.base_url) as c:
        reply = await c.chat.completions.create(
            model=ep.model,
            messages=[{"role": "user", "content": "1+1?"}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="required",
            max_tokens=17,
            stop="END",
            temperature=0.0,
        )
    backend.check()
    msg = reply.choices[0].message
    assert msg.content == "adding" and reply.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None and msg.tool_calls[0].id == "c7"
    assert msg.tool_calls[0].function.name == "add"  # type: ignore[union-attr]
    req = backend.requests[0]
    assert (req.max_tokens, req.stop, req.tool_choice) == (17, ["END"], "required")
    assert req.tools == TOOLS and req.messages == [{"role": "user", "content": "1+1?"}]
    assert runtime.counts.llm_calls == 1 and reply.usage is not None
    assert reply.usage.completion_tokens == runtime.counts.completion_tokens


async def test_a_streamed_call_arrives_as_chunks_with_usage_and_done():
    backend = ScriptedBackend(text("forty-two", prompt_tokens=5, completion_tokens=3))
    async with relay(DirectLLM(backend), "a") as ep, client(ep.base_url) as c:
        stream = await c.chat.completions.create(
            model=ep.model,
            messages=[{"role": "user", "content": "q"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage, finish = [], None, None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert "".join(pieces) == "forty-two" and finish == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 3)


async def test_bad_requests_and_backend_failures_get_openai_errors_and_the_relay_keeps_serving():
    async def fail(request: object) -> None:
        raise BackendError("model fell over", backend="scripted")

    backend = ScriptedBackend(fail, text("still here"))
    async with relay(DirectLLM(backend), "a") as ep, client(ep.base_url) as c:
        with pytest.raises(openai.BadRequestError) as bad:
            await c.chat.completions.create(model="m", messages="not a list")  # type: ignore[arg-type]
        assert bad.value.body["param"] == "messages"  # type: ignore[index]
        with pytest.raises(openai.InternalServerError, match="model fell over"):
            await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        ok = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        async with httpx.AsyncClient() as h:
            raw = await h.post(f"{ep.base_url}/chat/completions", content=b"{nope")
            missing = await h.get(f"{ep.base_url}/embeddings")
    assert ok.choices[0].message.content == "still here"
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "body"
    assert missing.status_code == 404


async def test_leaving_the_relay_closes_idle_keep_alive_connections_at_once():
    backend = ScriptedBackend(text("one"))
    async with httpx.AsyncClient() as h:
        loop = asyncio.get_running_loop()
        async with relay(DirectLLM(backend), "a") as ep:
            r = await h.post(
                f"{ep.base_url}/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}
            )
            assert r.headers["connection"] == "keep-alive"
            started = loop.time()
        assert loop.time() - started < 1.0  # the open connection did not hold the relay for its timeout
        with pytest.raises(httpx.TransportError):
            await h.post(f"{ep.base_url}/chat/completions", json={"messages": []})


def spec_for(runtime: CountingRuntime, kernel: Kernel | None = None) -> AgentSpec:
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: first
            b: second
        """
        return a + b

    return AgentSpec("fw-agent", Episode(prompt="q", tools=[Tool.from_function(add)]), runtime, kernel=kernel)


@contextlib.contextmanager
def no_patch(name: str) -> Iterator[None]:
    yield


async def test_without_the_kernel_the_endpoint_is_a_live_relay_and_tools_run_through_the_runtime():
    backend = ScriptedBackend(text("hi"))
    runtime = CountingRuntime(DirectLLM(backend))
    spec = spec_for(runtime)
    assert [t.name for t in episode_tools(spec)] == ["add", "finish"]
    async with endpoint(spec, "langchain") as ep, client(ep.base_url) as c:
        assert not ep.kernel and ep.base_url.startswith("http://127.0.0.1:")
        await c.chat.completions.create(model=ep.model, messages=[{"role": "user", "content": "q"}])
        out = await tool_runner(spec, spec.episode.tools[0])({"a": 2, "b": 3})
        bad = await tool_runner(spec, spec.episode.tools[0])({"a": "x"})
    assert out == "5" and "b" in bad  # a model's bad arguments come back as the observation
    assert (runtime.counts.llm_calls, runtime.counts.tool_calls) == (1, 2)


async def test_with_the_kernel_calls_are_the_agents_syscalls_and_are_counted_from_the_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    # The frameworks are not installed here: stand in for the patch, keep everything else real.
    monkeypatch.setattr(framework_support, "patched", no_patch)
    backend = ScriptedBackend(text("one", completion_tokens=4), text("two", completion_tokens=6))
    cfg = KernelConfig(backends=[], data_dir=str(tmp_path))
    async with Kernel(cfg, backends={"m": backend}, entry_points=False) as kernel:
        runtime = CountingRuntime(DirectLLM(backend))
        spec = spec_for(runtime, kernel)
        async with endpoint(spec, "langchain") as ep:
            assert ep.kernel and ep.base_url == UNUSED_URL
            assert sdk.current_agent() == "fw-agent"
            for _ in range(2):
                await sdk.llm_chat([{"role": "user", "content": "q"}])
            assert await tool_runner(spec, spec.episode.tools[0])({"a": 1, "b": 1}) == "2"
    assert runtime.counts.llm_calls == 2 and runtime.counts.completion_tokens == 10
    metrics = kernel.metrics.agents["fw-agent"]
    assert runtime.counts.llm_seconds > 0
    assert runtime.counts.llm_seconds == pytest.approx(metrics.seconds_by_kind["llm"])
    assert metrics.by_kind["llm"] == 2


async def test_a_relay_failure_heard_by_the_client_maps_back_to_the_kernels_error_kind():
    async def fail(request: object) -> None:
        raise BackendError("model fell over", backend="scripted")

    backend = ScriptedBackend(fail)
    async with relay(DirectLLM(backend), "a") as ep, client(ep.base_url) as c:
        with pytest.raises(openai.InternalServerError) as server:
            await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        with pytest.raises(openai.BadRequestError) as bad:
            await c.chat.completions.create(model="m", messages="nope")  # type: ignore[arg-type]
    failed, refused = client_error(server.value), client_error(bad.value)
    assert isinstance(failed, BackendError) and failed.status_code == 500 and "model fell over" in str(failed)
    assert isinstance(refused, InvalidRequestError) and refused.field == "messages"
    assert client_error(ValueError("not the client's")) is None
    assert client_error(failed) is failed


def test_a_framework_thread_gets_the_loops_answer_and_never_waits_forever_on_a_stopped_loop():
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    async def double(n: int) -> int:
        return 2 * n

    try:
        assert run_on_loop(loop, double(21), timeout=5.0) == 42
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5.0)
    # The run's loop stopped while a framework thread still had a tool call to make.
    pending = double(1)
    with pytest.raises(DeadlineExceededError, match=r"did not answer within 0\.2 s"):
        run_on_loop(loop, pending, timeout=0.2)
    loop.close()
