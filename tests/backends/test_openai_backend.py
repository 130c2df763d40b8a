"""The ``openai`` backend against a scripted server (respx): request shape, streaming, errors, slices."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from aios.backends.base import Backend, Completed, Preempted, SliceControl, Snapshot
from aios.backends.openai_backend import OpenAIBackend
from aios.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    InvalidRequestError,
    RateLimitedError,
    StreamInterruptedError,
)
from aios.types import LLMRequest, ToolCall, Usage

BASE = "http://llm.test/v1"
MakeBackend = Callable[..., Awaitable[OpenAIBackend]]

pytestmark = pytest.mark.timeout(30)


# --- scripted server pieces -------------------------------------------------------------------


def chunk(
    content: str | None = None,
    *,
    finish: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """One chat.completion.chunk in the OpenAI streaming shape."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    """The trailing usage chunk vLLM and OpenAI send with ``include_usage``."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def tool_delta(
    index: int, *, id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    """One streamed tool-call delta."""
    item: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        item["id"] = id
        item["type"] = "function"
    if name is not None:
        item["function"]["name"] = name
    return item


def event(data: dict[str, Any] | str) -> bytes:
    """One SSE event."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    """A whole SSE body."""
    return b"".join(event(c) for c in chunks) + (event("[DONE]") if done else b"")


def text_stream(*pieces: str, finish: str = "stop") -> bytes:
    """A role chunk, one chunk per piece, then a finish chunk."""
    return sse(chunk(role="assistant", content=""), *(chunk(p) for p in pieces), chunk(finish=finish))


def streaming(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    """An SSE response."""
    return httpx.Response(
        status, content=body, headers={"content-type": "text/event-stream", **(headers or {})}
    )


class ScriptedStream(httpx.AsyncByteStream):
    """A response body that yields bytes, raises, or waits on events in order; records closing."""

    def __init__(self, *parts: bytes | BaseException | asyncio.Event):
        self.parts = parts
        self.yielded = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if isinstance(part, BaseException):
                raise part
            if isinstance(part, asyncio.Event):
                await part.wait()
                continue
            self.yielded += 1
            yield part

    async def aclose(self) -> None:
        self.closed = True


def scripted(stream: ScriptedStream) -> httpx.Response:
    """An SSE response whose body is ``stream``."""
    return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})


def error(
    status: int, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """An OpenAI-style error response."""
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return httpx.Response(status, json=body, headers=headers or {})


def sent(route: respx.Route, call: int = -1) -> dict[str, Any]:
    """The JSON body of a request the route received."""
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body


def req(**knobs: Any) -> LLMRequest:
    """A small valid request."""
    return LLMRequest(messages=[{"role": "user", "content": "hi"}], **knobs)


# --- fixtures ---------------------------------------------------------------------------------


class FakeSleep:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True) as r:
        yield r


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def make_backend(http: httpx.AsyncClient, fake_sleep: FakeSleep) -> AsyncIterator[MakeBackend]:
    made: list[OpenAIBackend] = []

    async def make(**knobs: Any) -> OpenAIBackend:
        config: dict[str, Any] = {
            "name": "core-a",
            "base_url": BASE,
            "model": "served-model",
            "api_key": "sk-test",
            "http_client": http,
            "sleep": fake_sleep,
            "jitter": lambda: 0.5,
            **knobs,
        }
        backend = OpenAIBackend(**config)
        await backend.start()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


async def run(backend: OpenAIBackend, request: LLMRequest, **kw: Any) -> Completed:
    outcome = await backend.generate(request, control=SliceControl.unlimited(), **kw)
    assert isinstance(outcome, Completed)
    return outcome


# --- configuration and lifecycle --------------------------------------------------------------


def test_backend_satisfies_protocol_and_declares_capabilities() -> None:
    backend = OpenAIBackend(name="c", base_url=BASE, model="m", capacity=5, pass_priority=True)
    assert isinstance(backend, Backend)
    caps = backend.capabilities
    assert (caps.streaming, caps.snapshot, caps.capacity, caps.tools, caps.priority) == (
        True,
        "text",
        5,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"name": ""}, "name"),
        ({"model": 3}, "model"),
        ({"base_url": "llm.test/v1"}, "base_url"),
        ({"base_url": "http://"}, "base_url"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"continuation": "ollama"}, "continuation"),
        ({"pass_priority": "yes"}, "pass_priority"),
        ({"http_client": object()}, "http_client"),
        ({"extra_body": {"stream": False}}, "extra_body"),
        ({"extra_body": [1]}, "extra_body"),
        ({"api_key": 42}, "api_key"),
    ],
)
def test_bad_config_raises_config_error_naming_the_field(knobs: dict[str, Any], field: str) -> None:
    config: dict[str, Any] = {"name": "c", "base_url": BASE, "model": "m", **knobs}
    with pytest.raises(ConfigError) as info:
        OpenAIBackend(**config)
    assert info.value.field == field


@pytest.mark.parametrize(("env", "bearer"), [("sk-env", "sk-env"), (None, "EMPTY")])
async def test_api_key_defaults_to_the_environment_then_empty(
    router: respx.MockRouter,
    make_backend: MakeBackend,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    bearer: str,
) -> None:
    if env is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", env)
    route = router.post("/chat/completions").mock(return_value=streaming(text_stream("ok")))
    await run(await make_backend(api_key=None), req())
    assert route.calls.last.request.headers["authorization"] == f"Bearer {bearer}"


async def test_generate_before_start_raises_backend_error() -> None:
    backend = OpenAIBackend(name="c", base_url=BASE, model="m")
    with pytest.raises(BackendError, match="not started"):
        await backend.generate(req(), control=SliceControl.unlimited())


async def test_close_leaves_an_injected_client_open(http: httpx.AsyncClient) -> None:
    backend = OpenAIBackend(name="c", base_url=BASE, model="m", http_client=http)
    await backend.start()
    await backend.close()
    assert not http.is_closed


async def test_close_closes_the_client_it_created() -> None:
    backend = OpenAIBackend(name="c", base_url=BASE, model="m", capacity=3)
    await backend.start()
    own = backend._own_http
    assert own is not None
    assert own._transport._pool._max_connections == 6  # type: ignore[attr-defined]
    await backend.close()
    assert own.is_closed


# --- request shape ----------------------------------------------------------------------------


async def test_request_body_carries_messages_tools_and_sampling_fields(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    route = router.post("/chat/completions").mock(return_value=streaming(text_stream("ok")))
    backend = await make_backend(extra_body={"top_p": 0.9})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    request = LLMRequest(
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        model="gpt-4o-mini",
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "f"}},
        temperature=0.3,
        max_tokens=50,
        stop=["\n\n"],
        response_format={"type": "json_object"},
        seed=7,
    )
    await run(backend, request)
    assert sent(route) == {
        "model": "served-model",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "max_tokens": 50,
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "stop": ["\n\n"],
        "response_format": {"type": "json_object"},
        "seed": 7,
        "top_p": 0.9,
    }
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"


async def test_priority_is_sent_when_enabled(router: respx.MockRouter, make_backend: MakeBackend) -> None:
    route = router.post("/chat/completions").mock(return_value=streaming(text_stream("ok")))
    backend = await make_backend(pass_priority=True)
    await run(backend, req(), priority=-3)
    assert sent(route)["priority"] == -3


async def test_priority_is_absent_when_not_enabled(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    route = router.post("/chat/completions").mock(return_value=streaming(text_stream("ok")))
    backend = await make_backend()
    await run(backend, req(), priority=5)
    assert "priority" not in sent(route)


# --- streaming --------------------------------------------------------------------------------


async def test_streamed_pieces_join_into_the_text_and_reach_on_delta(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    router.post("/chat/completions").mock(return_value=streaming(text_stream("Hel", "lo", ", world")))
    backend = await make_backend()
    seen: list[str] = []
    outcome = await run(backend, req(), on_delta=seen.append)
    result = outcome.result
    assert seen == ["Hel", "lo", ", world"]
    assert (result.text, result.finish_reason, result.segments) == ("Hello, world", "stop", ["Hello, world"])
    assert result.usage == Usage(prompt_tokens=0, completion_tokens=3)
    assert (result.model, result.backend) == ("served-model", "core-a")


async def test_server_usage_replaces_the_chunk_count(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    body = sse(chunk("a"), chunk("bc"), chunk(finish="length"), usage_chunk(11, 4))
    router.post("/chat/completions").mock(return_value=streaming(body))
    backend = await make_backend()
    result = (await run(backend, req())).result
    assert (result.text, result.finish_reason) == ("abc", "length")
    assert result.usage == Usage(prompt_tokens=11, completion_tokens=4)


async def test_tool_call_deltas_assemble_into_tool_calls(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    body = sse(
        chunk(role="assistant"),
        chunk(tool_calls=[tool_delta(0, id="call_1", name="get_weather")]),
        chunk(tool_calls=[tool_delta(0, args='{"city": ')]),
        chunk(tool_calls=[tool_delta(0, args='"Paris"}')]),
        chunk(tool_calls=[tool_delta(1, id="call_2", name="get_time", args="{}")]),
        chunk(finish="tool_calls"),
    )
    router.post("/chat/completions").mock(return_value=streaming(body))
    backend = await make_backend()
    result = (await run(backend, req())).result
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCall(id="call_2", name="get_time", arguments="{}"),
    ]
    assert result.tool_calls[0].parsed_arguments() == {"city": "Paris"}
    assert result.text == ""


async def test_tool_calls_finished_with_stop_still_report_tool_calls(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    body = sse(chunk(tool_calls=[tool_delta(0, id="c", name="f", args="{}")]), chunk(finish="stop"))
    router.post("/chat/completions").mock(return_value=streaming(body))
    result = (await run(await make_backend(), req())).result
    assert (result.finish_reason, [tc.name for tc in result.tool_calls]) == ("tool_calls", ["f"])


async def test_a_streaming_tool_call_is_not_cut_when_the_slice_ends(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    body = sse(
        chunk(tool_calls=[tool_delta(0, id="c", name="f", args='{"a"')]),
        chunk(tool_calls=[tool_delta(0, args=": 1}")]),
        chunk(finish="tool_calls"),
    )
    router.post("/chat/completions").mock(return_value=streaming(body))
    backend = await make_backend()
    control = SliceControl(max_tokens=1)
    outcome = await backend.generate(req(), control=control)
    assert isinstance(outcome, Completed)
    assert outcome.result.tool_calls == [ToolCall(id="c", name="f", arguments='{"a": 1}')]
    assert control.tokens == 2


# --- preemption and resume --------------------------------------------------------------------


async def test_slice_of_three_tokens_cuts_after_the_third_piece_and_closes_the_stream(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    pieces = ["The", " sea", " is", " wide", " and", " deep"]
    stream = ScriptedStream(event(chunk(role="assistant", content="")), *(event(chunk(p)) for p in pieces))
    router.post("/chat/completions").mock(return_value=scripted(stream))
    backend = await make_backend()
    seen: list[str] = []
    outcome = await backend.generate(
        req(max_tokens=20), control=SliceControl(max_tokens=3), on_delta=seen.append
    )
    assert isinstance(outcome, Preempted)
    snap = outcome.snapshot
    assert (snap.kind, snap.text, snap.tokens, snap.segments, snap.backend) == (
        "text",
        "The sea is",
        3,
        ["The sea is"],
        "core-a",
    )
    # Cut before the server sent usage: the prompt is estimated (4 chars a token + framing), not 0,
    # so the fair policy and quotas still charge the prompt every resume re-evaluates.
    assert snap.usage == Usage(prompt_tokens=len("hi") // 4 + 4, completion_tokens=3)
    assert seen == ["The", " sea", " is"]
    assert stream.closed
    assert stream.yielded < 1 + len(pieces)


async def test_slice_is_not_cut_when_nobody_is_waiting(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    router.post("/chat/completions").mock(return_value=streaming(text_stream("a", "b", "c", "d")))
    backend = await make_backend()
    outcome = await backend.generate(req(), control=SliceControl(max_tokens=2, contended=lambda: False))
    assert isinstance(outcome, Completed)
    assert outcome.result.text == "abcd"


async def test_slice_ending_on_the_last_allowed_token_completes_instead_of_cutting(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    router.post("/chat/completions").mock(return_value=streaming(text_stream("a", "b", "c", finish="length")))
    backend = await make_backend()
    outcome = await backend.generate(req(max_tokens=3), control=SliceControl(max_tokens=3))
    assert isinstance(outcome, Completed)
    assert (outcome.result.text, outcome.result.finish_reason) == ("abc", "length")


async def test_resume_sends_the_assistant_prefix_and_joins_text_exactly(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    second = sse(chunk(" wide"), chunk(" and"), chunk(" deep."), chunk(finish="stop"), usage_chunk(30, 3))
    route = router.post("/chat/completions").mock(
        side_effect=[streaming(text_stream("The", " sea", " is", " not", " cut")), streaming(second)]
    )
    backend = await make_backend()
    request = req(max_tokens=20)
    first = await backend.generate(request, control=SliceControl(max_tokens=3))
    assert isinstance(first, Preempted)
    done = await backend.generate(request, control=SliceControl.unlimited(), resume=first.snapshot)
    assert isinstance(done, Completed)
    result = done.result
    assert result.text == "The sea is wide and deep."
    assert result.segments == ["The sea is", " wide and deep."]
    assert "".join(result.segments) == result.text
    body = sent(route, 1)
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "The sea is"},
    ]
    assert body["max_tokens"] == 17
    assert "continue_final_message" not in body
    assert "add_generation_prompt" not in body
    # The first slice was cut before any usage: its prompt is estimated from the resumed slice.
    assert result.usage == Usage(prompt_tokens=27, completion_tokens=6, recomputed_tokens=30)


async def test_vllm_continuation_sends_continue_flags_and_counts_recomputed_prompt(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    route = router.post("/chat/completions").mock(
        return_value=streaming(sse(chunk(" more"), chunk(finish="stop"), usage_chunk(25, 1)))
    )
    backend = await make_backend(continuation="vllm")
    snap = Snapshot(
        kind="text",
        text="partial",
        tokens=4,
        usage=Usage(prompt_tokens=20, completion_tokens=4),
        segments=["partial"],
        backend="core-a",
    )
    result = (await run(backend, req(max_tokens=10), resume=snap)).result
    body = sent(route)
    assert body["messages"][-1] == {"role": "assistant", "content": "partial"}
    assert (body["continue_final_message"], body["add_generation_prompt"]) == (True, False)
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["max_tokens"] == 6
    assert (result.text, result.segments) == ("partial more", ["partial", " more"])
    assert result.usage == Usage(prompt_tokens=20, completion_tokens=5, recomputed_tokens=25)


async def test_vllm_continuous_usage_gives_a_cut_slice_its_exact_counts(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    def counted(text: str, n: int) -> dict[str, Any]:
        c = chunk(text)
        c["usage"] = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
        return c

    body = sse(counted("ab", 2), counted("c", 3), counted("d", 4), chunk(finish="stop"))
    router.post("/chat/completions").mock(return_value=streaming(body))
    backend = await make_backend(continuation="vllm")
    outcome = await backend.generate(req(), control=SliceControl(max_tokens=2))
    assert isinstance(outcome, Preempted)
    assert (outcome.snapshot.text, outcome.snapshot.tokens) == ("abc", 3)
    assert outcome.snapshot.usage == Usage(prompt_tokens=12, completion_tokens=3)


async def test_resume_with_no_tokens_left_completes_without_a_request(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    snap = Snapshot(kind="text", text="abc", tokens=5, usage=Usage(3, 5), segments=["abc"], backend="core-a")
    result = (await run(backend, req(max_tokens=5), resume=snap)).result
    assert (result.text, result.finish_reason, result.segments, result.usage) == (
        "abc",
        "length",
        ["abc"],
        Usage(3, 5),
    )


@pytest.mark.parametrize(
    ("kind", "maker"),
    [("state", "core-a"), ("text", "another-core")],
)
async def test_a_foreign_snapshot_is_refused(make_backend: MakeBackend, kind: str, maker: str) -> None:
    backend = await make_backend()
    snap = Snapshot(kind=kind, text="x", tokens=1, usage=Usage(), backend=maker)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError) as info:
        await backend.generate(req(), control=SliceControl.unlimited(), resume=snap)
    assert info.value.field == "resume"


async def test_cancelling_a_generation_closes_its_stream(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    never = asyncio.Event()
    stream = ScriptedStream(event(chunk("first")), never)
    router.post("/chat/completions").mock(return_value=scripted(stream))
    backend = await make_backend()
    got_first = asyncio.Event()
    task = asyncio.create_task(
        backend.generate(req(), control=SliceControl.unlimited(), on_delta=lambda _t: got_first.set())
    )
    await asyncio.wait_for(got_first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed


# --- errors and retries -----------------------------------------------------------------------


async def test_rate_limit_then_success_waits_as_retry_after_says(
    router: respx.MockRouter, make_backend: MakeBackend, fake_sleep: FakeSleep
) -> None:
    route = router.post("/chat/completions").mock(
        side_effect=[error(429, "slow down", headers={"retry-after": "2"}), streaming(text_stream("ok"))]
    )
    backend = await make_backend()
    result = (await run(backend, req())).result
    assert result.text == "ok"
    assert route.call_count == 2
    assert fake_sleep.delays == [2.0]


async def test_retry_after_ms_is_preferred_and_long_waits_are_clamped(
    router: respx.MockRouter, make_backend: MakeBackend, fake_sleep: FakeSleep
) -> None:
    router.post("/chat/completions").mock(
        side_effect=[
            error(429, "a", headers={"retry-after-ms": "250", "retry-after": "9"}),
            error(503, "b", headers={"retry-after": "3600"}),
            streaming(text_stream("ok")),
        ]
    )
    backend = await make_backend()
    assert (await run(backend, req())).result.text == "ok"
    assert fake_sleep.delays == [0.25, 30.0]


async def test_rate_limit_after_all_retries_raises_rate_limited_error(
    router: respx.MockRouter, make_backend: MakeBackend, fake_sleep: FakeSleep
) -> None:
    route = router.post("/chat/completions").mock(return_value=error(429, "slow down"))
    backend = await make_backend(max_retries=1)
    with pytest.raises(RateLimitedError) as info:
        await run(backend, req())
    assert (info.value.status_code, info.value.retryable, info.value.backend) == (429, True, "core-a")
    assert route.call_count == 2
    assert len(fake_sleep.delays) == 1


async def test_server_error_after_retries_raises_backend_error_with_status_500(
    router: respx.MockRouter, make_backend: MakeBackend, fake_sleep: FakeSleep
) -> None:
    route = router.post("/chat/completions").mock(return_value=error(500, "boom"))
    backend = await make_backend(max_retries=2)
    with pytest.raises(BackendError) as info:
        await run(backend, req())
    assert (info.value.status_code, info.value.retryable) == (500, True)
    assert "boom" in info.value.message
    assert route.call_count == 3
    # Exponential backoff with the fixed jitter of 0.5: 0.5 * 0.75, then 1.0 * 0.75.
    assert fake_sleep.delays == [0.375, 0.75]


async def test_bad_request_raises_invalid_request_with_the_servers_message_and_no_retry(
    router: respx.MockRouter, make_backend: MakeBackend, fake_sleep: FakeSleep
) -> None:
    route = router.post("/chat/completions").mock(
        return_value=error(400, "max_tokens is too large", param="max_tokens")
    )
    backend = await make_backend()
    with pytest.raises(InvalidRequestError) as info:
        await run(backend, req())
    assert info.value.field == "max_tokens"
    assert "max_tokens is too large" in info.value.message
    assert route.call_count == 1
    assert fake_sleep.delays == []


async def test_other_client_errors_are_not_retried(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    route = router.post("/chat/completions").mock(return_value=error(401, "bad key"))
    backend = await make_backend()
    with pytest.raises(BackendError) as info:
        await run(backend, req())
    assert (info.value.status_code, info.value.retryable) == (401, False)
    assert route.call_count == 1


async def test_timeout_raises_backend_timeout_error_after_retries(
    router: respx.MockRouter, make_backend: MakeBackend, fake_sleep: FakeSleep
) -> None:
    route = router.post("/chat/completions").mock(side_effect=httpx.ConnectTimeout("slow"))
    backend = await make_backend(max_retries=1)
    with pytest.raises(BackendTimeoutError) as info:
        await run(backend, req())
    assert info.value.retryable
    assert route.call_count == 2


async def test_connection_error_is_a_retryable_backend_error(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    router.post("/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    backend = await make_backend(max_retries=0)
    with pytest.raises(BackendError) as info:
        await run(backend, req())
    assert type(info.value) is BackendError
    assert info.value.retryable


async def test_stream_dropped_mid_way_raises_stream_interrupted_without_retry(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    stream = ScriptedStream(
        event(chunk("one")), event(chunk(" two")), httpx.RemoteProtocolError("peer closed")
    )
    route = router.post("/chat/completions").mock(return_value=scripted(stream))
    backend = await make_backend()
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        await backend.generate(req(), control=SliceControl.unlimited(), on_delta=seen.append)
    assert not info.value.retryable
    assert route.call_count == 1
    assert seen == ["one", " two"]


async def test_stream_broken_before_the_first_token_is_retried(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    broken = ScriptedStream(event(chunk(role="assistant", content="")), httpx.ReadError("reset"))
    route = router.post("/chat/completions").mock(
        side_effect=[scripted(broken), streaming(text_stream("ok"))]
    )
    backend = await make_backend()
    assert (await run(backend, req())).result.text == "ok"
    assert route.call_count == 2


async def test_read_timeout_mid_stream_raises_backend_timeout_error(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    stream = ScriptedStream(event(chunk("one")), httpx.ReadTimeout("no chunk"))
    route = router.post("/chat/completions").mock(return_value=scripted(stream))
    backend = await make_backend()
    with pytest.raises(BackendTimeoutError) as info:
        await run(backend, req())
    assert not info.value.retryable
    assert route.call_count == 1


async def test_stream_ending_without_finish_reason_raises_stream_interrupted(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    router.post("/chat/completions").mock(return_value=streaming(sse(chunk("a"), chunk("b"))))
    backend = await make_backend()
    with pytest.raises(StreamInterruptedError, match="finish_reason"):
        await run(backend, req())


async def test_malformed_json_chunk_raises_stream_interrupted(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    body = event(chunk("a")) + b"data: {not json\n\n" + event(chunk(finish="stop"))
    router.post("/chat/completions").mock(return_value=streaming(body))
    backend = await make_backend()
    with pytest.raises(StreamInterruptedError):
        await run(backend, req())


async def test_chunk_of_the_wrong_shape_raises_stream_interrupted(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    bad = {"choices": [{"index": 0, "delta": {"content": 5}, "finish_reason": None}]}
    router.post("/chat/completions").mock(return_value=streaming(sse(chunk("a"), bad)))
    backend = await make_backend()
    with pytest.raises(StreamInterruptedError, match="malformed"):
        await run(backend, req())


async def test_error_event_mid_stream_raises_stream_interrupted_with_its_message(
    router: respx.MockRouter, make_backend: MakeBackend
) -> None:
    body = sse(chunk("a"), {"error": {"message": "engine died"}}, done=False)
    router.post("/chat/completions").mock(return_value=streaming(body))
    backend = await make_backend()
    with pytest.raises(StreamInterruptedError, match="engine died"):
        await run(backend, req())
