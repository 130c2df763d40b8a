"""The AutoGen classic adapter against a scripted kernel: exact request and response shapes."""

# No `from __future__ import annotations`: ag2 reads tool parameter descriptions from live
# Annotated hints, as in its docs.
import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

autogen = pytest.importorskip("autogen", reason="AutoGen classic (ag2[openai]<1) is not installed")

from autogen.coding import LocalCommandLineCodeExecutor  # noqa: E402
from autogen.io.base import IOStream  # noqa: E402

from aios import sdk  # noqa: E402
from aios.adapters.registry import patched  # noqa: E402
from aios.backends.scripted import Answer, ScriptedBackend, text, tool_call  # noqa: E402
from aios.errors import InvalidRequestError  # noqa: E402

Start = Callable[[list[Answer]], ScriptedBackend]
CONFIG = {"model": "gpt-4o-mini", "api_key": "unused"}


@pytest.fixture(autouse=True)
def _patched() -> Iterator[None]:
    with patched("autogen"):
        yield


def weather_pair(
    *, tool_choice: str | None = "required", fn: Callable[..., Any] | None = None
) -> tuple[Any, Any, list[tuple[str, str]]]:
    """An assistant that calls ``get_weather`` and a user proxy that executes it, as ag2's docs do."""
    seen: list[tuple[str, str]] = []

    def get_weather(city: Annotated[str, "the city"]) -> str:
        seen.append((city, sdk.current_agent()))
        return f"sunny in {city}"

    entry = dict(CONFIG, tool_choice=tool_choice) if tool_choice else dict(CONFIG)
    assistant = autogen.AssistantAgent(
        "assistant",
        system_message="You answer weather questions with the tool.",
        llm_config={"config_list": [entry], "max_tokens": 40, "temperature": 0},
    )
    user = autogen.UserProxyAgent("user_proxy", human_input_mode="NEVER", code_execution_config=False)
    autogen.register_function(
        fn or get_weather, caller=assistant, executor=user, name="get_weather", description="Get the weather"
    )
    return assistant, user, seen


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "description": "Get the weather",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "the city"}},
            "required": ["city"],
        },
    },
}


def test_a_tool_call_runs_the_function_and_its_result_goes_back_to_the_model(default_kernel: Start):
    backend = default_kernel([tool_call("get_weather", {"city": "Paris"}), text("It is sunny in Paris.")])
    assistant, user, seen = weather_pair()

    result = user.initiate_chat(assistant, message="Weather in Paris?", max_turns=2, silent=True)

    # The function ran with the model's arguments, as the executing agent.
    assert seen == [("Paris", "user_proxy")]
    first, second = backend.requests
    assert first.model == "gpt-4o-mini"
    assert first.tools == [WEATHER_TOOL] and first.tool_choice == "required"
    assert first.max_tokens == 40 and first.temperature == 0.0
    assert first.messages == [
        {"role": "system", "content": "You answer weather questions with the tool."},
        {"role": "user", "content": "Weather in Paris?", "name": "user_proxy"},
    ]
    assert second.messages[2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "sunny in Paris", "tool_call_id": "call_1"},
    ]
    assert result.chat_history[-1]["content"] == "It is sunny in Paris."
    usage = result.cost["usage_including_cached_inference"]
    assert usage["scripted-model"] == {
        "cost": 0.0,
        "prompt_tokens": 24,
        "completion_tokens": 12,
        "total_tokens": 36,
    }
    agents = sdk.kernel_stats()["agents"]
    assert agents["assistant"]["by_kind"] == {"llm": 2}
    assert agents["user_proxy"]["by_kind"] == {"tool": 1} and agents["user_proxy"]["done"] == 1


def test_the_wrapper_answers_in_the_chat_completion_shape_ag2_reads(default_kernel: Start):
    default_kernel([text("hello there")])
    wrapper = autogen.OpenAIWrapper(config_list=[CONFIG])

    response = wrapper.create(messages=[{"role": "user", "content": "hi"}])

    assert response.choices[0].message.content == "hello there"
    assert response.choices[0].message.tool_calls is None
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "scripted-model" and response.cost == 0.0
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 2)
    assert wrapper.extract_text_or_completion_object(response) == ["hello there"]
    assert wrapper.total_usage_summary == {
        "total_cost": 0.0,
        "scripted-model": {"cost": 0.0, "prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
    }
    # No agent and no scope: the adapter's own name.
    assert sdk.kernel_stats()["agents"]["autogen"]["by_kind"] == {"llm": 1}


def test_a_price_in_the_config_entry_sets_the_cost(default_kernel: Start):
    default_kernel([text("hello there")])
    wrapper = autogen.OpenAIWrapper(config_list=[dict(CONFIG, price=[1.0, 2.0])])

    response = wrapper.create(messages=[{"role": "user", "content": "hi"}])

    assert response.cost == pytest.approx((11 * 1.0 + 2 * 2.0) / 1000)


def test_the_legacy_functions_api_maps_onto_tools_and_back(default_kernel: Start):
    backend = default_kernel([tool_call("lookup", {"q": "x"})])
    wrapper = autogen.OpenAIWrapper(config_list=[CONFIG])
    spec = {"name": "lookup", "description": "Look up", "parameters": {"type": "object", "properties": {}}}
    history = [
        {"role": "user", "content": "find x"},
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "lookup", "arguments": '{"q": "w"}'},
        },
        {"role": "function", "name": "lookup", "content": "nothing"},
    ]

    response = wrapper.create(messages=history, functions=[spec], function_call={"name": "lookup"})

    (sent,) = backend.requests
    assert sent.tools == [{"type": "function", "function": spec}]
    assert sent.tool_choice == {"type": "function", "function": {"name": "lookup"}}
    assert sent.messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "w"}'},
                }
            ],
        },
        {"role": "tool", "name": "lookup", "content": "nothing", "tool_call_id": "call_1"},
    ]
    message = response.choices[0].message
    assert message.tool_calls is None and response.choices[0].finish_reason == "function_call"
    assert (message.function_call.name, json.loads(message.function_call.arguments)) == ("lookup", {"q": "x"})
    assert wrapper.extract_text_or_completion_object(response) == [message]


def test_a_user_scope_names_the_agent_instead_of_the_autogen_names(default_kernel: Start):
    default_kernel([tool_call("get_weather", {"city": "Rome"}), text("Sunny.")])
    assistant, user, seen = weather_pair()

    with sdk.agent("travel-app"):
        user.initiate_chat(assistant, message="Weather in Rome?", max_turns=2, silent=True)

    assert seen == [("Rome", "travel-app")]
    assert sdk.kernel_stats()["agents"]["travel-app"]["by_kind"] == {"llm": 2, "tool": 1}
    assert set(sdk.kernel_stats()["agents"]) == {"travel-app"}


def test_a_function_that_raises_is_a_failed_syscall_and_ag2_still_gets_the_error(default_kernel: Start):
    default_kernel([tool_call("get_weather", {"city": "Atlantis"}), text("Sorry.")])

    def get_weather(city: Annotated[str, "the city"]) -> str:
        raise ValueError(f"no such city: {city}")

    assistant, user, _ = weather_pair(fn=get_weather)

    result = user.initiate_chat(assistant, message="Weather in Atlantis?", max_turns=2, silent=True)

    tool_turn = result.chat_history[2]
    assert tool_turn["tool_responses"][0]["content"] == "Error: no such city: Atlantis"
    stats = sdk.kernel_stats()["agents"]["user_proxy"]
    assert (stats["by_kind"], stats["failed"]) == ({"tool": 1}, 1)


async def test_an_async_chat_runs_async_tools_on_the_callers_loop(default_kernel: Start):
    default_kernel([tool_call("get_weather", {"city": "Oslo"}), text("Cold.")])
    loops: list[asyncio.AbstractEventLoop] = []

    async def get_weather(city: Annotated[str, "the city"]) -> str:
        loops.append(asyncio.get_running_loop())
        return f"snow in {city}"

    assistant, user, _ = weather_pair(fn=get_weather)

    result = await user.a_initiate_chat(assistant, message="Weather in Oslo?", max_turns=2, silent=True)

    assert loops == [asyncio.get_running_loop()]
    assert result.chat_history[2]["tool_responses"][0]["content"] == "snow in Oslo"
    agents = sdk.kernel_stats()["agents"]
    assert agents["assistant"]["by_kind"] == {"llm": 2} and agents["user_proxy"]["by_kind"] == {"tool": 1}


def code_pair(code_execution_config: dict[str, Any]) -> tuple[Any, Any]:
    assistant = autogen.AssistantAgent("assistant", llm_config={"config_list": [CONFIG], "max_tokens": 40})
    user = autogen.UserProxyAgent(
        "user_proxy", human_input_mode="NEVER", code_execution_config=code_execution_config
    )
    return assistant, user


CODE = "```python\nprint(6 * 7)\n```"


def test_legacy_code_execution_is_a_tool_syscall_per_block(default_kernel: Start, tmp_path: Path):
    backend = default_kernel([text(CODE), text("The answer is 42.")])
    assistant, user = code_pair({"work_dir": str(tmp_path), "use_docker": False})

    user.initiate_chat(assistant, message="Compute 6*7 in Python.", max_turns=2, silent=True)

    assert "exitcode: 0" in backend.requests[1].messages[-1]["content"]
    assert "42" in backend.requests[1].messages[-1]["content"]
    assert sdk.kernel_stats()["agents"]["user_proxy"]["by_kind"] == {"tool": 1}


def test_executor_code_execution_is_a_tool_syscall_of_the_speaking_agent(
    default_kernel: Start, tmp_path: Path
):
    backend = default_kernel([text("```python\nraise SystemExit(3)\n```"), text("It failed.")])
    assistant, user = code_pair({"executor": LocalCommandLineCodeExecutor(work_dir=tmp_path)})

    user.initiate_chat(assistant, message="Run it.", max_turns=2, silent=True)

    assert "exitcode: 3" in backend.requests[1].messages[-1]["content"]
    stats = sdk.kernel_stats()["agents"]["user_proxy"]
    assert (stats["by_kind"], stats["failed"]) == ({"tool": 1}, 1)


class Capture:
    """An ag2 IOStream that keeps what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        self.sent.append(sep.join(map(str, objects)))

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        raise AssertionError("no input expected")


def test_stream_true_shows_the_answer_through_the_iostream(default_kernel: Start):
    default_kernel([text("one two three")])
    wrapper = autogen.OpenAIWrapper(config_list=[dict(CONFIG, stream=True)])
    capture = Capture()

    with IOStream.set_default(capture):
        response = wrapper.create(messages=[{"role": "user", "content": "count"}])

    # ag2 wraps each event in an envelope whose ``content`` is the StreamEvent itself.
    events = [getattr(m, "content", None) for m in capture.sent]
    streamed = [e.content for e in events if type(e).__name__ == "StreamEvent"]
    assert streamed == ["one ", "two ", "three"]
    assert response.choices[0].message.content == "one two three"


def test_ag2_message_quirks_are_normalised_for_the_kernel(default_kernel: Start):
    backend = default_kernel([text("ok")])
    wrapper = autogen.OpenAIWrapper(config_list=[CONFIG])
    history = [
        {"role": "user", "content": "add"},
        # ag2 strips a missing id and type (for Mistral); a tool may return a non-string.
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "add", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1_0", "content": {"sum": 3}},
    ]

    wrapper.create(messages=history)

    assert backend.requests[0].messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1_0", "type": "function", "function": {"name": "add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_0", "content": '{"sum": 3}'},
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "functions": [{"name": "f", "parameters": {"type": "object"}}],
                "function_call": 42,
            },
            "function_call",
        ),
    ],
)
def test_bad_requests_get_a_typed_error_naming_the_field(default_kernel: Start, kwargs: Any, field: str):
    default_kernel([])
    wrapper = autogen.OpenAIWrapper(config_list=[CONFIG])

    with pytest.raises(InvalidRequestError) as info:
        wrapper.create(**kwargs)

    assert info.value.field == field
