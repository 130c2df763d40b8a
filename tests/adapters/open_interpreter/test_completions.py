"""The LLM hook under the patch: request shapes, litellm stream chunks, tool choice, message history."""

from __future__ import annotations

import pytest

from tests.adapters.open_interpreter.support import REASON, agent_kinds, import_warnings_ignored

with import_warnings_ignored():
    pytest.importorskip("interpreter", reason=REASON)

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from litellm.types.utils import ModelResponseStream

from aios import sdk
from aios.adapters.open_interpreter.completions import POLICY_ENV, request_kwargs, text_pieces
from aios.backends.scripted import ScriptedBackend, text
from aios.errors import ConfigError, InvalidRequestError
from tests.adapters.open_interpreter.scripted import execute

pytestmark = pytest.mark.usefixtures("oi_patched")

Scripted = Callable[..., ScriptedBackend]
Make = Callable[..., Any]

SYSTEM = {"role": "system", "content": "You are Open Interpreter."}
USER = {"role": "user", "content": "What is 6*7?"}
TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": "execute",
        "parameters": {
            "type": "object",
            "properties": {"language": {"type": "string"}, "code": {"type": "string"}},
            "required": ["language", "code"],
        },
    },
}


def test_text_answer_comes_as_litellm_chunks_read_as_dicts_and_attributes(
    scripted: Scripted, make_interpreter: Make
) -> None:
    scripted(text("Hello there", completion_tokens=3, model=""))
    chunks = list(
        make_interpreter().llm.completions(model="gpt-4o-mini", messages=[SYSTEM, USER], stream=True)
    )

    assert all(isinstance(c, ModelResponseStream) for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["Hello", " there", None]
    assert [c.choices[0].delta.content for c in chunks] == ["Hello", " there", None]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.role is None
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "stop"]
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].model == "gpt-4o-mini"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 3, 14)


@given(st.text(alphabet=st.sampled_from(["`", "\n", " ", "\t", "a", "é", "(", "1"]), max_size=60))
def test_text_pieces_give_the_text_back_and_keep_backticks_apart(text: str) -> None:
    pieces = text_pieces(text)
    assert "".join(pieces) == text
    assert all(p and ("`" not in p or set(p) == {"`"}) for p in pieces)
    assert all("\n" not in p or p == "\n" for p in pieces)


def test_tool_call_comes_as_one_chunk_with_id_name_and_arguments(
    scripted: Scripted, make_interpreter: Make
) -> None:
    scripted(execute("print(6*7)"))
    chunks = list(
        make_interpreter().llm.completions(
            model="gpt-4o-mini", messages=[SYSTEM, USER], tools=[TOOL_SCHEMA], stream=True
        )
    )

    assert len(chunks) == 2
    delta = chunks[0]["choices"][0]["delta"]
    assert "tool_calls" in delta and delta["content"] is None
    call = delta["tool_calls"][0]
    assert (call.index, call.id, call.type) == (0, "call_7", "function")
    assert call.function.name == "execute"
    assert json.loads(call.function.arguments) == {"language": "python", "code": "print(6*7)"}
    assert chunks[1].choices[0].finish_reason == "tool_calls"


def test_request_carries_model_limits_stop_and_tools(scripted: Scripted, make_interpreter: Make) -> None:
    backend = scripted(text("ok"))
    list(
        make_interpreter().llm.completions(
            model="gpt-4o-mini",
            messages=[SYSTEM, USER],
            tools=[TOOL_SCHEMA],
            max_tokens=17,
            temperature=0.3,
            stop="<|end|>",
            api_key="x",
            api_base="http://nowhere.invalid",
            num_retries=0,
            stream=True,
        )
    )

    req = backend.requests[0]
    assert req.model == "gpt-4o-mini"
    assert (req.max_tokens, req.temperature, req.stop) == (17, 0.3, ["<|end|>"])
    assert req.tools == [TOOL_SCHEMA]
    assert req.messages == [SYSTEM, USER]


def test_execute_is_forced_on_a_fresh_user_turn_and_free_after_a_code_result() -> None:
    history = [
        SYSTEM,
        USER,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "execute", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
    ]
    fresh = request_kwargs({"messages": history[:2], "tools": [TOOL_SCHEMA]}, policy="first")
    after = request_kwargs({"messages": history, "tools": [TOOL_SCHEMA]}, policy="first")
    no_tools = request_kwargs({"messages": history[:2]}, policy="first")
    auto = request_kwargs({"messages": history[:2], "tools": [TOOL_SCHEMA]}, policy="auto")
    explicit = request_kwargs(
        {"messages": history[:2], "tools": [TOOL_SCHEMA], "tool_choice": "none"}, policy="first"
    )

    assert fresh["tool_choice"] == {"type": "function", "function": {"name": "execute"}}
    assert "tool_choice" not in after
    assert "tool_choice" not in no_tools and "tools" not in no_tools
    assert "tool_choice" not in auto
    assert explicit["tool_choice"] == "none"


def test_policy_comes_from_the_environment(
    scripted: Scripted, make_interpreter: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = scripted(text("no code"))
    monkeypatch.setenv(POLICY_ENV, "auto")
    list(make_interpreter().llm.completions(model="m", messages=[SYSTEM, USER], tools=[TOOL_SCHEMA]))
    assert backend.requests[0].tool_choice is None

    monkeypatch.setenv(POLICY_ENV, "always")
    with pytest.raises(ConfigError) as err:
        make_interpreter().llm.completions(model="m", messages=[SYSTEM, USER])
    assert err.value.field == POLICY_ENV


def test_tool_history_converts_to_plain_kernel_messages() -> None:
    class Fn:
        name = "execute"
        arguments = '{"language": "python", "code": "1"}'

    class Call:
        id = "toolu_2"
        function = Fn()

    messages: list[dict[str, Any]] = [
        SYSTEM,
        USER,
        {"role": "assistant", "content": "", "tool_calls": [Call()], "extra": "dropped"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "1", "name": "execute"},
    ]
    kw = request_kwargs({"messages": messages}, policy="first")

    assert kw["messages"][2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "toolu_2", "type": "function", "function": {"name": "execute", "arguments": Fn.arguments}}
        ],
    }
    assert kw["messages"][3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "1", "name": "execute"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [SYSTEM, "hi"]}, "messages[1]"),
        ({"messages": [USER], "model": 4}, "model"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}]},
            "messages[0].tool_calls[0]",
        ),
    ],
)
def test_bad_parameters_raise_a_typed_error_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        request_kwargs(params, policy="first")
    assert err.value.field == field


def test_chat_runs_the_models_code_and_returns_the_result_to_the_model(
    scripted: Scripted, make_interpreter: Make
) -> None:
    backend = scripted(execute("print(6*7)"), text("It is 42."))
    interp = make_interpreter()

    new = interp.chat("What is 6*7? Use python.", display=False)

    assert [(m["role"], m["type"], m["content"]) for m in new] == [
        ("assistant", "code", "print(6*7)"),
        ("computer", "console", "42\n"),
        ("assistant", "message", "It is 42."),
    ]
    first, second = backend.requests
    assert first.tool_choice == {"type": "function", "function": {"name": "execute"}}
    assert first.tools is not None and first.tools[0]["function"]["name"] == "execute"
    assert first.max_tokens == 32
    assert second.tool_choice is None
    call, result = second.messages[-2:]
    assert call["role"] == "assistant"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {
        "language": "python",
        "code": "print(6*7)",
    }
    assert result == {
        "role": "tool",
        "tool_call_id": call["tool_calls"][0]["id"],
        "name": "execute",
        "content": "42",
    }
    assert agent_kinds("open_interpreter") == {"llm": 2, "tool": 1}


def test_text_mode_model_gets_no_tools_and_its_fenced_code_runs(
    scripted: Scripted, make_interpreter: Make
) -> None:
    backend = scripted(text("Sure.\n```shell\necho 42\n```"), text("Done: 42."))
    interp = make_interpreter()
    interp.llm.supports_functions = False

    new = interp.chat("Print 42 in the shell.", display=False)

    assert [(m["role"], m["type"]) for m in new] == [
        ("assistant", "message"),
        ("assistant", "code"),
        ("computer", "console"),
        ("assistant", "message"),
    ]
    assert new[1]["format"] == "shell" and new[1]["content"].strip() == "echo 42"
    assert new[2]["content"].strip() == "42"
    assert all(r.tools is None and r.tool_choice is None for r in backend.requests)
    assert backend.requests[1].messages[-1]["role"] == "user"
    assert "42" in backend.requests[1].messages[-1]["content"]
    assert agent_kinds("open_interpreter") == {"llm": 2, "tool": 1}


def test_calls_belong_to_the_identity_scope_else_the_interpreters_name(
    scripted: Scripted, make_interpreter: Make
) -> None:
    scripted(text("one"), text("two"))
    named = make_interpreter()
    named.name = "bob"

    with sdk.agent("alice"):
        list(named.llm.completions(model="m", messages=[SYSTEM, USER]))
    list(named.llm.completions(model="m", messages=[SYSTEM, USER]))

    assert agent_kinds("alice") == {"llm": 1}
    assert agent_kinds("bob") == {"llm": 1}


def test_kernel_rejection_reaches_chat_as_a_typed_error(scripted: Scripted, make_interpreter: Make) -> None:
    scripted()
    interp = make_interpreter()
    interp.llm.temperature = 5

    with pytest.raises(InvalidRequestError) as err:
        interp.chat("hi", display=False)
    assert err.value.field == "temperature"
