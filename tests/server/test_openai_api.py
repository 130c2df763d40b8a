"""The OpenAI-compatible endpoint, checked with the official ``openai`` client (2.x) and raw HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from aios.backends.base import Capabilities
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.backends.sim import SimBackend
from aios.server import ServerThread
from tests.server.conftest import TOKENS, ServeFactory, auth

pytestmark = pytest.mark.timeout(60)
USER = [{"role": "user", "content": "hello"}]


def client(srv: ServerThread, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=TOKENS[who], max_retries=0, timeout=30)


def stats(srv: ServerThread) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{srv.url}/v1/stats", headers=auth("admin")).json()
    return data


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def test_a_plain_openai_client_gets_a_completion_with_usage(server: ServerThread):
    r = client(server).chat.completions.create(model="sim", messages=USER, max_tokens=3)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.content == "t0 t1 t2"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 3, 8)
    assert stats(server)["agents"]["alice"]["by_kind"] == {"llm": 1}


def test_stream_chunks_join_to_the_text_and_end_with_usage(server: ServerThread):
    chunks = list(
        client(server).chat.completions.create(
            model="sim", messages=USER, max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == "t0 t1 t2 t3"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1


def test_tool_calls_come_back_in_the_openai_shape_plain_and_streamed(serve: ServeFactory):
    weather = {"city": "Paris"}
    backend = ScriptedBackend(
        tool_call("get_weather", weather, call_id="call_7"),
        tool_call("get_weather", weather, call_id="call_8"),
    )
    srv = serve(backends={"scripted": backend})
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    c = client(srv)
    r = c.chat.completions.create(model="x", messages=USER, tools=tools, tool_choice="auto")
    tc = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert tc is not None and (tc[0].id, tc[0].function.name) == ("call_7", "get_weather")
    assert json.loads(tc[0].function.arguments) == weather
    chunks = list(c.chat.completions.create(model="x", messages=USER, tools=tools, stream=True))
    calls = [d for ch in chunks if ch.choices for d in ch.choices[0].delta.tool_calls or []]
    assert [(d.index, d.id, d.function.name) for d in calls] == [(0, "call_8", "get_weather")]
    assert json.loads(calls[0].function.arguments) == weather
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert backend.requests[0].tools == tools
    backend.check()


def test_a_tool_result_conversation_goes_through_unchanged(serve: ServeFactory):
    backend = ScriptedBackend(text("It is sunny."))
    srv = serve(backends={"scripted": backend})
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]  # fmt: skip
    r = client(srv).chat.completions.create(model="x", messages=messages)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "It is sunny."
    assert backend.requests[0].messages == messages


def test_models_lists_the_cores_and_the_routed_model_names(serve: ServeFactory):
    srv = serve(kernel={"routes": {"gpt-4o-mini": "sim"}})
    models = client(srv).models.list()
    assert {(m.id, m.owned_by) for m in models.data} == {("sim", "aios"), ("gpt-4o-mini", "aios")}
    r = client(srv).chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=1)
    assert r.choices[0].message.content == "t0"
    routes = {(x["model"], x["core"]) for x in stats(srv)["routes"]}
    assert ("gpt-4o-mini", "sim") in routes


class PrioritySim(SimBackend):
    """A sim core that takes priorities and remembers which it was given."""

    def __init__(self) -> None:
        super().__init__(capacity=4)
        self.capabilities = Capabilities(streaming=True, snapshot="text", capacity=4, priority=True)
        self.seen: list[int] = []

    async def generate(self, request: Any, *, priority: int = 0, **kw: Any) -> Any:
        self.seen.append(priority)
        return await super().generate(request, priority=priority, **kw)


def test_priority_comes_from_the_header_or_the_body_and_the_header_wins(serve: ServeFactory):
    backend = PrioritySim()
    srv = serve(backends={"sim": backend})
    base = {"messages": USER, "max_tokens": 1}
    with httpx.Client(base_url=srv.url, headers=auth("admin")) as h:
        assert h.post("/v1/chat/completions", json={**base, "priority": 7}).status_code == 200
        r = h.post("/v1/chat/completions", json={**base, "priority": 7}, headers={"X-AIOS-Priority": "-3"})
        assert r.status_code == 200
        assert h.post("/v1/chat/completions", json=base).status_code == 200
    assert backend.seen == [7, -3, 0]


def test_a_token_may_not_ask_for_a_priority_above_its_floor(server: ServerThread):
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": USER, "max_tokens": 1},
        headers={**auth("alice"), "X-AIOS-Priority": "-1"},
    )
    assert r.status_code == 403 and "priority" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER, "n": 2}, "n"),
        ({"messages": USER, "max_tokens": 10**9}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}] * 600}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": USER, "temperature": "hot"}, "temperature"),
        ({"messages": USER, "tool_choice": "required"}, "tool_choice"),
        ({"messages": "hello"}, "messages"),
        ([1, 2, 3], "body"),
    ],
)
def test_malformed_chat_requests_get_400_naming_the_field(server: ServerThread, body: Any, param: str):
    r = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=auth("alice"))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_non_json_and_nan_bodies_are_refused_with_a_message(server: ServerThread):
    for raw in (b"{not json", b'{"messages": [], "temperature": NaN}', b""):
        r = httpx.post(f"{server.url}/v1/chat/completions", content=raw, headers=auth("alice"))
        assert r.status_code == 400 and r.json()["error"]["param"] == "body", raw


def test_a_body_over_the_limit_gets_413(serve: ServeFactory):
    srv = serve(server={"max_body_bytes": 1000})
    big = {"messages": [{"role": "user", "content": "x" * 2000}]}
    r = httpx.post(f"{srv.url}/v1/chat/completions", json=big, headers=auth("alice"))
    assert r.status_code == 413 and "1000" in r.json()["error"]["message"]

    def chunked() -> Any:  # no Content-Length: the limit holds while reading
        yield b'{"messages": [{"role": "user", "content": "'
        yield b"x" * 2000
        yield b'"}]}'

    r = httpx.post(f"{srv.url}/v1/chat/completions", content=chunked(), headers=auth("alice"))
    assert r.status_code == 413


class _Stream:
    """An open SSE response whose first chunk has arrived (so its syscall is queued or running)."""

    def __init__(self, h: httpx.Client, max_tokens: int):
        body = {"messages": USER, "max_tokens": max_tokens, "stream": True}
        self.resp = h.send(h.build_request("POST", "/v1/chat/completions", json=body), stream=True)
        assert self.resp.status_code == 200
        # Kept: dropping a half-read line iterator closes the response, which cancels the call.
        self.lines = self.resp.iter_lines()
        assert next(self.lines).startswith("data: ")

    def close(self) -> None:
        self.resp.close()


def _open_stream(h: httpx.Client, max_tokens: int) -> _Stream:
    return _Stream(h, max_tokens)


def test_a_full_queue_answers_429_with_retry_after_and_recovers(serve: ServeFactory):
    slow = SimBackend(capacity=1, token_time=0.02)
    srv = serve(backends={"sim": slow}, kernel={"max_queued": 1}, server={"retry_after": 3})
    with httpx.Client(base_url=srv.url, headers=auth("alice"), timeout=30) as h:
        running, queued = _open_stream(h, 2000), _open_stream(h, 2000)
        r = h.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 1})
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert r.json()["error"]["code"] == "QueueFullError"
        with pytest.raises(openai.RateLimitError):
            client(srv).chat.completions.create(model="sim", messages=USER, max_tokens=1)
        running.close()
        queued.close()
        wait_for(lambda: stats(srv)["queued"] == 0 and sum(stats(srv)["in_flight"].values()) == 0)
        assert h.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 1}).status_code == 200
    assert stats(srv)["agents"]["alice"]["cancelled"] == 2


def test_leaving_a_stream_early_cancels_its_syscall(serve: ServeFactory):
    srv = serve(backends={"sim": SimBackend(capacity=1, token_time=0.02)})
    with httpx.Client(base_url=srv.url, headers=auth("bob"), timeout=30) as h:
        resp = _open_stream(h, 5000)
        resp.close()
    wait_for(lambda: stats(srv)["agents"].get("bob", {}).get("cancelled") == 1)
    assert stats(srv)["agents"]["bob"]["completion_tokens"] == 0


def test_errors_reach_openai_clients_as_their_usual_exceptions(server: ServerThread):
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="tok-nobody-0123456789abcdef", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="sim", messages=USER)  # type: ignore[arg-type]
    forbidden = client(server).with_options(default_headers={"X-AIOS-Agent": "bob"})
    with pytest.raises(openai.PermissionDeniedError, match="may not act as agent 'bob'"):
        forbidden.chat.completions.create(model="sim", messages=USER)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="sim", messages=[])
