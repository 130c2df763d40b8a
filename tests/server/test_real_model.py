"""The server on the real embedded model (SmolLM2-135M): the plain ``openai`` client, streaming,
forced tool calls, and the remote SDK; several agents share the one model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from aios import sdk
from aios.config import BackendConfig, KernelConfig
from aios.server import ServerThread
from aios.server.settings import server_config_from_mapping
from tests.server.conftest import TOKENS, auth, token_table

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city"}},
            "required": ["city"],
        },
    },
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    kcfg = KernelConfig(
        backends=[BackendConfig("embedded", "llamacpp")],
        routes={"gpt-4o-mini": "embedded"},
        data_dir=str(tmp_path_factory.mktemp("model-server")),
    )
    cfg = server_config_from_mapping({"port": 0, "log_level": "warning", "tokens": token_table()})
    srv = ServerThread(kcfg, cfg).start(timeout=180)
    yield srv
    srv.stop()


def client(srv: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=TOKENS["alice"], max_retries=0, timeout=240)


def test_the_openai_client_gets_the_same_answer_plain_and_streamed(model_server: ServerThread):
    c = client(model_server)
    plain = c.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=12)  # type: ignore[arg-type]
    text = plain.choices[0].message.content
    assert text and "paris" in text.lower()
    assert plain.usage is not None and plain.usage.prompt_tokens > 5 and plain.usage.completion_tokens > 0
    chunks = list(
        c.chat.completions.create(
            model="gpt-4o-mini",
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
    assert len([p for p in pieces if p]) >= 2, "the answer should arrive in several pieces"
    assert "".join(pieces) == text  # temperature 0: the same answer
    assert (
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    )


def test_a_forced_tool_call_comes_back_as_openai_tool_calls_plain_and_streamed(model_server: ServerThread):
    c = client(model_server)
    ask = [{"role": "user", "content": "What is the weather like in Paris today?"}]
    r = c.chat.completions.create(
        model="gpt-4o-mini", messages=ask, tools=[WEATHER], tool_choice=FORCED, max_tokens=48
    )  # type: ignore[arg-type]
    (tc,) = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls" and tc.function.name == "get_weather"
    assert isinstance(json.loads(tc.function.arguments)["city"], str)
    chunks = list(
        c.chat.completions.create(
            model="gpt-4o-mini",
            messages=ask,
            tools=[WEATHER],
            tool_choice=FORCED,
            max_tokens=48,
            stream=True,  # type: ignore[arg-type]
        )
    )
    calls = [d for ch in chunks if ch.choices for d in ch.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == json.loads(tc.function.arguments)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "", "no raw tool-call JSON may leak into the content"


def test_agents_share_the_model_through_the_remote_sdk_with_metrics_per_agent(model_server: ServerThread):
    conn = sdk.connect(model_server.url, token=TOKENS["admin"], default=False)

    async def agents() -> list[Any]:
        async def one(name: str, prompt: str) -> str:
            with sdk.agent(name):
                stream = await sdk.llm_stream(
                    [{"role": "user", "content": prompt}], max_tokens=10, kernel=conn
                )
                pieces = [p async for p in stream]
                assert stream.result is not None and "".join(pieces) == stream.result.text
                return stream.result.text

        return await asyncio.gather(
            one("writer", "Name a colour."), one("reader", "Say hello."), one("critic", "Count to three.")
        )

    try:
        texts = asyncio.run(agents())
        assert all(texts)
        metrics = httpx.get(f"{model_server.url}/metrics", headers=auth("admin")).text
    finally:
        conn.close()
    for name in ("writer", "reader", "critic"):
        assert f'aios_agent_syscalls_total{{agent="{name}",kind="llm"}} 1' in metrics
    assert 'aios_route_calls_total{model="gpt-4o-mini",core="embedded"}' in metrics
