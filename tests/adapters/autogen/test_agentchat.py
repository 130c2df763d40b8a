"""The autogen-agentchat adapter against a scripted kernel: exact request and result shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("autogen_agentchat", reason="autogen-agentchat is not installed")

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import (
    ModelClientStreamingChunkEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
)
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import FunctionTool
from autogen_ext.models.openai import OpenAIChatCompletionClient
from pydantic import BaseModel

from aios import sdk
from aios.adapters.registry import patched
from aios.backends.scripted import Answer, ScriptedBackend, text, tool_call
from aios.config import KernelConfig
from aios.kernel import Kernel
from aios.types import LLMRequest, LLMResult

Start = Callable[[list[Answer]], ScriptedBackend]


@pytest.fixture(autouse=True)
def _patched() -> Iterator[None]:
    with patched("autogen_agentchat"):
        yield


def backend_kernel(backend: ScriptedBackend) -> Kernel:
    """A kernel on ``backend`` to enter in the test's own task (so the SDK finds it)."""
    return Kernel(KernelConfig(backends=[]), backends={"scripted": backend}, entry_points=False)


def client(**kw: Any) -> OpenAIChatCompletionClient:
    return OpenAIChatCompletionClient(model="gpt-4o-mini", api_key="unused", **kw)


seen: list[tuple[str, str, asyncio.AbstractEventLoop]] = []


async def get_weather(city: str) -> str:
    """Get the weather for a city."""
    seen.append((city, sdk.current_agent(default="-"), asyncio.get_running_loop()))
    return f"sunny in {city}"


@pytest.fixture(autouse=True)
def _fresh_seen() -> None:
    seen.clear()


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"description": "city", "title": "City", "type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": False,
    },
}


async def test_an_assistant_agent_tool_call_runs_the_tool_as_a_syscall_of_the_agent():
    backend = ScriptedBackend(tool_call("get_weather", {"city": "Paris"}))
    agent = AssistantAgent("assistant", model_client=client(tool_choice="required"), tools=[get_weather])

    async with backend_kernel(backend):
        result = await agent.run(task="Weather in Paris?")
        agents = sdk.kernel_stats()["agents"]

    kinds = [type(m) for m in result.messages[1:]]
    assert kinds == [ToolCallRequestEvent, ToolCallExecutionEvent, ToolCallSummaryMessage]
    assert result.messages[-1].to_text() == "sunny in Paris"
    assert [(city, who) for city, who, _ in seen] == [("Paris", "assistant")]
    (sent,) = backend.requests
    assert sent.model == "gpt-4o-mini" and sent.tools == [WEATHER_TOOL] and sent.tool_choice == "required"
    assert sent.messages[1:] == [{"role": "user", "name": "user", "content": "Weather in Paris?"}]
    assert agents["assistant"]["by_kind"] == {"llm": 1, "tool": 1}
    backend.check()


async def test_a_tool_choice_passed_to_create_wins_over_the_clients_default():
    backend = ScriptedBackend(text("no tools"), tool_call("get_weather", {"city": "Rome"}))
    tool = FunctionTool(get_weather, description="Get the weather for a city.")
    model = client(tool_choice="required")
    ask = [UserMessage(content="hi", source="user")]

    async with backend_kernel(backend):
        await model.create(ask, tools=[tool], tool_choice="none")
        await model.create(ask, tools=[tool], tool_choice=tool)

    assert [r.tool_choice for r in backend.requests] == [
        "none",
        {"type": "function", "function": {"name": "get_weather"}},
    ]
    backend.check()


async def test_text_and_calls_come_back_as_create_results_and_usage_adds_up():
    backend = ScriptedBackend(
        text("It is sunny."), tool_call("get_weather", {"city": "Oslo"}, said="Let me check.")
    )
    model = client()
    ask = [UserMessage(content="Weather?", source="user")]
    tool = FunctionTool(get_weather, description="Get the weather for a city.")

    async with backend_kernel(backend):
        said = await model.create(ask)
        asked = await model.create(ask, tools=[tool])

    assert said == CreateResult(
        finish_reason="stop", content="It is sunny.", usage=RequestUsage(11, 3), cached=False, thought=None
    )
    assert asked.finish_reason == "function_calls" and asked.thought == "Let me check."
    assert asked.content == [FunctionCall(id="call_1", arguments='{"city": "Oslo"}', name="get_weather")]
    assert model.total_usage() == RequestUsage(prompt_tokens=24, completion_tokens=10)
    assert backend.requests[1].tool_choice == "auto"
    backend.check()


async def test_messages_reach_the_kernel_in_openai_form():
    backend = ScriptedBackend(text("Done."))
    history = [
        SystemMessage(content="Be brief."),
        UserMessage(content="Weather in Paris?", source="user"),
        AssistantMessage(
            content=[FunctionCall(id="c1", arguments='{"city": "Paris"}', name="get_weather")], source="a"
        ),
        FunctionExecutionResultMessage(
            content=[
                FunctionExecutionResult(content="sunny", name="get_weather", call_id="c1", is_error=False)
            ]
        ),
    ]

    async with backend_kernel(backend):
        await client(temperature=0.5, max_tokens=33, stop="END").create(history)

    (sent,) = backend.requests
    assert sent.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "name": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]
    assert (sent.temperature, sent.max_tokens, sent.stop, sent.tools) == (0.5, 33, ["END"], None)
    backend.check()


class Weather(BaseModel):
    city: str
    sunny: bool


async def test_a_pydantic_json_output_becomes_a_json_schema_response_format():
    backend = ScriptedBackend(
        text('{"city": "Paris", "sunny": true}', pieces=['{"city": "Paris", "sunny": true}'])
    )

    async with backend_kernel(backend):
        result = await client().create([UserMessage(content="?", source="user")], json_output=Weather)

    assert backend.requests[0].response_format == {
        "type": "json_schema",
        "json_schema": {"name": "Weather", "schema": Weather.model_json_schema()},
    }
    assert Weather.model_validate_json(result.content) == Weather(city="Paris", sunny=True)
    backend.check()


async def test_a_stream_with_a_kernel_in_this_loop_yields_the_pieces_then_the_result():
    backend = ScriptedBackend(text("It is sunny."))

    async with backend_kernel(backend):
        items = [i async for i in client().create_stream([UserMessage(content="?", source="user")])]

    assert items[:-1] == ["It ", "is ", "sunny."]
    assert isinstance(items[-1], CreateResult) and items[-1].content == "It is sunny."
    backend.check()


async def test_a_streamed_tool_call_yields_no_text_pieces():
    backend = ScriptedBackend(tool_call("get_weather", {"city": "Oslo"}, stream_json=True))
    tool = FunctionTool(get_weather, description="Get the weather for a city.")

    async with backend_kernel(backend):
        items = [
            i async for i in client().create_stream([UserMessage(content="?", source="user")], tools=[tool])
        ]

    assert len(items) == 1 and items[0].finish_reason == "function_calls"
    assert items[0].content == [FunctionCall(id="call_1", arguments='{"city": "Oslo"}', name="get_weather")]
    backend.check()


async def test_a_stream_through_the_default_kernel_yields_the_kernels_pieces(default_kernel: Start):
    default_kernel([text("one two three")])

    items = [i async for i in client().create_stream([UserMessage(content="?", source="user")])]

    assert items[:-1] == ["one ", "two ", "three"] and items[-1].content == "one two three"


async def test_tools_run_on_the_callers_loop_and_scope_through_the_default_kernel(default_kernel: Start):
    default_kernel([tool_call("get_weather", {"city": "Lima"})])
    agent = AssistantAgent("assistant", model_client=client(tool_choice="required"), tools=[get_weather])

    with sdk.agent("travel-app"):
        result = await agent.run(task="Weather in Lima?")

    assert result.messages[-1].to_text() == "sunny in Lima"
    assert seen == [("Lima", "travel-app", asyncio.get_running_loop())]
    assert sdk.kernel_stats()["agents"]["travel-app"]["by_kind"] == {"llm": 1, "tool": 1}


async def test_a_cancellation_token_cancels_the_llm_syscall():
    arrived = asyncio.Event()

    async def never(request: LLMRequest) -> LLMResult:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    backend = ScriptedBackend(never)
    token = CancellationToken()

    async with backend_kernel(backend):
        pending = asyncio.ensure_future(
            client().create([UserMessage(content="?", source="user")], cancellation_token=token)
        )
        await asyncio.wait_for(arrived.wait(), 10)
        token.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        await asyncio.sleep(0)
        stats = sdk.kernel_stats()["agents"]["autogen_agentchat"]

    assert (stats["syscalls"], stats["cancelled"]) == (1, 1)
    backend.check()


async def test_an_agent_with_model_client_stream_emits_chunk_events():
    backend = ScriptedBackend(text("Hello from the kernel."))
    agent = AssistantAgent("assistant", model_client=client(), model_client_stream=True)

    async with backend_kernel(backend):
        events = [e async for e in agent.run_stream(task="Say hello.")]

    chunks = [e.content for e in events if isinstance(e, ModelClientStreamingChunkEvent)]
    assert chunks == ["Hello ", "from ", "the ", "kernel."]
    assert events[-1].messages[-1].content == "Hello from the kernel."
    backend.check()


async def test_a_tool_that_raises_is_a_failed_syscall_and_the_agent_sees_the_error():
    backend = ScriptedBackend(tool_call("broken", {"city": "Oslo"}))

    async def broken(city: str) -> str:
        """Always fails."""
        raise RuntimeError(f"no data for {city}")

    agent = AssistantAgent("assistant", model_client=client(tool_choice="required"), tools=[broken])

    async with backend_kernel(backend):
        result = await agent.run(task="Weather in Oslo?")
        stats = sdk.kernel_stats()["agents"]["assistant"]

    execution = next(m for m in result.messages if isinstance(m, ToolCallExecutionEvent))
    assert execution.content[0].is_error and "no data for Oslo" in execution.content[0].content
    assert (stats["by_kind"], stats["failed"]) == ({"llm": 1, "tool": 1}, 1)
    backend.check()


@pytest.mark.parametrize(
    "pieces",
    [[" It ", "is ", "sunny."], ['{"note": ', '"not a call"}']],
    ids=["plain text", "text that looks like a call"],
)
async def test_a_streamed_text_answer_with_tools_offered_still_yields_every_piece(pieces: list[str]):
    backend = ScriptedBackend(text("".join(pieces), pieces=pieces))
    tool = FunctionTool(get_weather, description="Get the weather for a city.")

    async with backend_kernel(backend):
        items = [
            i async for i in client().create_stream([UserMessage(content="?", source="user")], tools=[tool])
        ]

    assert items[:-1] == pieces and items[-1].content == "".join(pieces)
    backend.check()


async def test_cancelling_a_tool_run_through_the_default_kernel_cancels_the_tool_itself(
    default_kernel: Start,
):
    default_kernel([])
    started, stopped = asyncio.Event(), asyncio.Event()

    async def slow(city: str) -> str:
        """Never finishes on its own."""
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return city

    pending = asyncio.ensure_future(
        FunctionTool(slow, description="slow").run_json({"city": "x"}, CancellationToken())
    )
    await asyncio.wait_for(started.wait(), 10)
    pending.cancel()

    with pytest.raises(asyncio.CancelledError):
        await pending
    await asyncio.wait_for(stopped.wait(), 10)
