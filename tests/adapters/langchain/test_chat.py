"""Chat models under the patch: request and result shapes, streaming, identity, callbacks, cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip(
    "langchain_core", reason="the langchain adapter tests need langchain-core (envs/langchain.lock)"
)
pytest.importorskip("langchain_openai", reason="the langchain adapter tests need langchain-openai")

from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from aios import sdk
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.errors import InvalidRequestError
from aios.kernel import Kernel

pytestmark = pytest.mark.usefixtures("lc_patched")

Scripted = Callable[..., ScriptedBackend]
LocalScripted = Callable[..., tuple[Kernel, ScriptedBackend]]


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


MULTIPLY_SPEC = {
    "type": "function",
    "function": {
        "name": "multiply",
        "description": "Multiply two integers.",
        "parameters": {
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "type": "object",
        },
    },
}


def make_llm(**kw: Any) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", api_key="unused", **kw)


def add(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total


def test_bound_tool_call_comes_back_as_tool_calls_with_usage(default_scripted: Scripted):
    backend = default_scripted(
        tool_call("multiply", '{"a": 3, "b": 4}', call_id="call_7", prompt_tokens=11, completion_tokens=9)
    )
    llm = make_llm(max_tokens=32, temperature=0)
    msg = llm.bind_tools([multiply], tool_choice="multiply").invoke(
        [SystemMessage("You are a calculator."), HumanMessage("3 times 4?")]
    )
    assert isinstance(msg, AIMessage)
    assert msg.content == ""
    assert msg.tool_calls == [
        {"name": "multiply", "args": {"a": 3, "b": 4}, "id": "call_7", "type": "tool_call"}
    ]
    assert msg.invalid_tool_calls == []
    assert msg.usage_metadata == {"input_tokens": 11, "output_tokens": 9, "total_tokens": 20}
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    assert msg.response_metadata["token_usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 9,
        "total_tokens": 20,
    }
    req = backend.requests[0]
    assert req.messages == [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "3 times 4?"},
    ]
    assert req.tools == [MULTIPLY_SPEC]
    assert req.tool_choice == {"type": "function", "function": {"name": "multiply"}}
    assert (req.model, req.max_tokens, req.temperature) == ("gpt-4o-mini", 32, 0)


def test_a_conversation_with_tool_results_reaches_the_kernel_in_openai_shape(default_scripted: Scripted):
    backend = default_scripted(text("It is 12."))
    history = [
        HumanMessage("3 times 4?"),
        AIMessage("", tool_calls=[{"name": "multiply", "args": {"a": 3, "b": 4}, "id": "call_1"}]),
        ToolMessage("12", tool_call_id="call_1"),
        HumanMessage(content=[{"type": "text", "text": "Say it"}, {"type": "text", "text": "briefly."}]),
    ]
    final = make_llm().invoke(history, stop=["Observation:"])
    assert final.content == "It is 12."
    assert backend.requests[0].messages == [
        {"role": "user", "content": "3 times 4?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_1",
                    "function": {"name": "multiply", "arguments": '{"a": 3, "b": 4}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12"},
        {"role": "user", "content": "Say it\nbriefly."},
    ]
    req = backend.requests[0]
    assert (req.stop, req.tools) == (["Observation:"], None)
    # Unset sampling knobs fall back to the kernel's defaults, not to OpenAI's.
    assert (req.temperature, req.max_tokens) == (0.0, 256)


def test_arguments_that_are_not_json_become_an_invalid_tool_call(default_scripted: Scripted):
    default_scripted(tool_call("multiply", '{"a": 3, "b":', call_id="call_bad"))
    msg = make_llm().bind_tools([multiply], tool_choice="any").invoke("3 times 4?")
    assert msg.tool_calls == []
    [bad] = msg.invalid_tool_calls
    assert (bad["name"], bad["args"], bad["id"]) == ("multiply", '{"a": 3, "b":', "call_bad")
    assert "not JSON" in (bad["error"] or "")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("any", "required"),
        (True, "required"),
        ({"type": "tool", "name": "multiply"}, {"type": "function", "function": {"name": "multiply"}}),
        ({"type": "any"}, "required"),
    ],
)
def test_tool_choice_spellings_reach_the_kernel_normalized(
    default_scripted: Scripted, choice: Any, expected: Any
):
    backend = default_scripted(tool_call("multiply", '{"a": 1, "b": 2}'))
    make_llm().invoke("x", tools=[MULTIPLY_SPEC], tool_choice=choice)
    assert backend.requests[0].tool_choice == expected


def test_a_tool_choice_the_kernel_cannot_read_is_a_typed_error_naming_the_field(default_scripted: Scripted):
    default_scripted()
    with pytest.raises(InvalidRequestError) as info:
        make_llm().invoke("x", tools=[MULTIPLY_SPEC], tool_choice={"pick": "multiply"})
    assert info.value.field == "tool_choice"


def test_stream_chunks_add_up_to_what_invoke_returns(default_scripted: Scripted):
    default_scripted(text("Twelve is the product."), text("Twelve is the product."))
    llm = make_llm()
    whole = llm.invoke("3 times 4?")
    chunks = list(llm.stream("3 times 4?"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.content for c in chunks] == ["Twelve", " is", " the", " product.", ""]
    total = add(chunks)
    assert total.content == whole.content == "Twelve is the product."
    assert total.usage_metadata == whole.usage_metadata
    assert total.response_metadata["finish_reason"] == "stop"
    assert chunks[-1].chunk_position == "last"
    assert len({c.id for c in chunks}) == 1


def test_a_streamed_tool_call_arrives_as_tool_call_chunks(default_scripted: Scripted):
    default_scripted(tool_call("multiply", '{"a": 6, "b": 7}', call_id="call_s"))
    chunks = list(make_llm().bind_tools([multiply], tool_choice="multiply").stream("6 times 7?"))
    [with_call] = [c for c in chunks if c.tool_call_chunks]
    assert with_call.tool_call_chunks == [
        {
            "name": "multiply",
            "args": '{"a": 6, "b": 7}',
            "id": "call_s",
            "index": 0,
            "type": "tool_call_chunk",
        }
    ]
    total = add(chunks)
    assert total.tool_calls == [
        {"name": "multiply", "args": {"a": 6, "b": 7}, "id": "call_s", "type": "tool_call"}
    ]
    assert total.response_metadata["finish_reason"] == "tool_calls"


async def test_astream_with_a_kernel_in_this_loop_yields_pieces_as_generated(local_scripted: LocalScripted):
    kernel, _ = local_scripted(
        text("Hello world, again", pieces=["Hel", "lo world,", " again"], prompt_tokens=7)
    )
    async with kernel:
        chunks = [c async for c in make_llm().astream("hi")]
    assert [c.content for c in chunks] == ["Hel", "lo world,", " again", ""]
    total = add(chunks)
    assert total.content == "Hello world, again"
    assert total.usage_metadata == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}


async def test_astream_with_the_default_kernel_replays_the_whole_answer(default_scripted: Scripted):
    default_scripted(text("one two"))
    chunks = [c async for c in make_llm().astream("hi")]
    assert [c.content for c in chunks] == ["one", " two", ""]


async def test_ainvoke_counts_under_the_agent_of_the_enclosing_scope(local_scripted: LocalScripted):
    kernel, backend = local_scripted(tool_call("multiply", '{"a": 2, "b": 5}'))
    async with kernel:
        with sdk.agent("planner"):
            msg = await make_llm().bind_tools([multiply], tool_choice="multiply").ainvoke("2 times 5?")
        stats = sdk.kernel_stats()
    assert msg.tool_calls[0]["args"] == {"a": 2, "b": 5}
    assert backend.requests[0].tools == [MULTIPLY_SPEC]
    assert stats["agents"]["planner"]["by_kind"] == {"llm": 1}
    assert "langchain" not in stats["agents"]


def test_identity_falls_back_to_the_models_name_then_to_langchain(default_scripted: Scripted):
    default_scripted(text("a"), text("b"))
    make_llm(name="researcher").invoke("x")
    make_llm().invoke("y")
    agents = sdk.kernel_stats()["agents"]
    assert {name: a["by_kind"] for name, a in agents.items()} == {
        "researcher": {"llm": 1},
        "langchain": {"llm": 1},
    }


def test_streaming_callbacks_see_every_piece_of_an_implicitly_streamed_invoke(default_scripted: Scripted):
    class Tokens(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tokens: list[str] = []

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            self.tokens.append(token)

    default_scripted(text("Four score and"))
    handler = Tokens()
    msg = make_llm(streaming=True).invoke("x", config={"callbacks": [handler]})
    assert msg.content == "Four score and"
    assert handler.tokens == ["Four", " score", " and", ""]


def test_langchains_cache_still_answers_a_repeated_call_without_a_syscall(default_scripted: Scripted):
    default_scripted(text("cached answer"))
    llm = make_llm(cache=InMemoryCache())
    first = llm.invoke("same question")
    second = llm.invoke("same question")
    assert first.content == second.content == "cached answer"
    assert sdk.kernel_stats()["agents"]["langchain"]["syscalls"] == 1


def test_batch_makes_one_syscall_per_input(default_scripted: Scripted):
    default_scripted(text("same"), text("same"), text("same"))
    out = make_llm().batch(["a", "b", "c"])
    assert [m.content for m in out] == ["same"] * 3
    assert sdk.kernel_stats()["agents"]["langchain"]["by_kind"] == {"llm": 3}


class Product(BaseModel):
    """The product of two numbers."""

    value: int


def test_structured_output_by_json_schema_is_parsed_into_the_schema(default_scripted: Scripted):
    backend = default_scripted(text(json.dumps({"value": 12})))
    result = make_llm().with_structured_output(Product).invoke("3 times 4?")
    assert result == Product(value=12)
    fmt = backend.requests[0].response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Product"
    assert fmt["json_schema"]["schema"]["properties"] == {"value": {"type": "integer"}}


def test_structured_output_by_function_calling_forces_the_schema_tool(default_scripted: Scripted):
    backend = default_scripted(tool_call("Product", '{"value": 42}'))
    result = make_llm().with_structured_output(Product, method="function_calling").invoke("6 times 7?")
    assert result == Product(value=42)
    assert backend.requests[0].tool_choice == {"type": "function", "function": {"name": "Product"}}
