"""Unmodified AutoGen example agents, written as their docs write them, on the real embedded model.

The only AIOS line is ``aios.patch(...)``; the calls reach the process-default kernel (the
embedded SmolLM2-135M). The 135M model answers tools only when a call is forced, so both examples
force it the way each framework lets a user: ag2's ``tool_choice`` config entry field, and
``tool_choice`` given to the autogen-ext client (see ``aios.adapters.autogen.agentchat``).
"""

# No `from __future__ import annotations`: ag2 reads tool parameter descriptions from live hints.
import json
import time
from collections.abc import Iterator
from typing import Annotated

import pytest

pytest.importorskip("autogen", reason="AutoGen classic (ag2[openai]<1) is not installed")
pytest.importorskip("autogen_agentchat", reason="autogen-agentchat is not installed")

import aios
from aios import sdk
from aios.config import KernelConfig

pytestmark = pytest.mark.model


@pytest.fixture
def embedded_kernel() -> Iterator[None]:
    """The process-default kernel on the embedded model, fresh for each example."""
    sdk.start_default_kernel(KernelConfig())
    yield
    sdk.stop_default_kernel()


def test_the_autogen_classic_weather_example_runs_on_the_kernel(embedded_kernel: None):
    undo = aios.patch("autogen")
    try:
        from autogen import AssistantAgent, UserProxyAgent, register_function

        calls: list[str] = []

        def get_weather(city: Annotated[str, "The city name"]) -> str:
            calls.append(city)
            return f"It is sunny and 22 degrees in {city}."

        assistant = AssistantAgent(
            name="assistant",
            system_message="You are a helpful assistant. Use the get_weather tool for weather questions.",
            llm_config={
                "config_list": [{"model": "gpt-4o-mini", "api_key": "unused", "tool_choice": "required"}],
                "max_tokens": 48,
                "temperature": 0,
            },
        )
        user_proxy = UserProxyAgent("user_proxy", human_input_mode="NEVER", code_execution_config=False)
        register_function(
            get_weather,
            caller=assistant,
            executor=user_proxy,
            description="Get the current weather for a city.",
        )

        started = time.perf_counter()
        result = user_proxy.initiate_chat(assistant, message="What is the weather in Paris?", max_turns=2)
        elapsed = time.perf_counter() - started
    finally:
        undo()

    suggested = result.chat_history[1]["tool_calls"][0]["function"]
    assert suggested["name"] == "get_weather"
    # The function really ran, with the arguments the model produced.
    assert calls and calls[0] == json.loads(suggested["arguments"])["city"]
    assert (
        result.chat_history[2]["tool_responses"][0]["content"] == f"It is sunny and 22 degrees in {calls[0]}."
    )
    agents = sdk.kernel_stats()["agents"]
    assert agents["assistant"]["by_kind"] == {"llm": 2} and agents["assistant"]["completion_tokens"] > 0
    assert agents["user_proxy"]["by_kind"] == {"tool": 1} and agents["user_proxy"]["done"] == 1
    print(f"\nag2 example: {elapsed:.1f} s, city={calls[0]!r}")


async def test_the_autogen_agentchat_weather_example_runs_on_the_kernel(embedded_kernel: None):
    undo = aios.patch("autogen_agentchat")
    try:
        from autogen_agentchat.agents import AssistantAgent
        from autogen_agentchat.messages import ToolCallRequestEvent, ToolCallSummaryMessage
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        calls: list[str] = []

        async def get_weather(city: str) -> str:
            """Get the current weather for a city."""
            calls.append(city)
            return f"It is sunny and 22 degrees in {city}."

        model_client = OpenAIChatCompletionClient(
            model="gpt-4o-mini", api_key="unused", tool_choice="required", max_tokens=48, temperature=0
        )
        agent = AssistantAgent(
            "weather_agent",
            model_client=model_client,
            tools=[get_weather],
            system_message="You are a helpful assistant. Use the get_weather tool for weather questions.",
        )

        started = time.perf_counter()
        result = await agent.run(task="What is the weather in Paris?")
        elapsed = time.perf_counter() - started
        await model_client.close()
    finally:
        undo()

    request = next(m for m in result.messages if isinstance(m, ToolCallRequestEvent))
    assert request.content[0].name == "get_weather"
    assert calls and calls[0] == json.loads(request.content[0].arguments)["city"]
    summary = result.messages[-1]
    assert isinstance(summary, ToolCallSummaryMessage)
    assert summary.content == f"It is sunny and 22 degrees in {calls[0]}."
    stats = sdk.kernel_stats()["agents"]["weather_agent"]
    assert stats["by_kind"] == {"llm": 1, "tool": 1} and stats["done"] == 2
    assert model_client.total_usage().completion_tokens > 0
    print(f"\nagentchat example: {elapsed:.1f} s, city={calls[0]!r}")
