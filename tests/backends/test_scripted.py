"""The scripted backend: answers in order, streams its pieces, and fails the test on surprises."""

from __future__ import annotations

import asyncio

import pytest

from aios import sdk
from aios.backends.base import Backend, Completed, Outcome, SliceControl
from aios.backends.scripted import Reply, ScriptedBackend, text, tool_call, word_pieces
from aios.config import KernelConfig
from aios.errors import BackendError, InvalidRequestError
from aios.kernel import Kernel
from aios.types import LLMRequest, LLMResult, Usage

USER = [{"role": "user", "content": "hi"}]


async def ask(backend: ScriptedBackend, content: str = "hi", pieces: list[str] | None = None) -> LLMResult:
    outcome: Outcome = await backend.generate(
        LLMRequest(messages=[{"role": "user", "content": content}]),
        control=SliceControl.unlimited(),
        on_delta=None if pieces is None else pieces.append,
    )
    assert isinstance(outcome, Completed)
    return outcome.result


def test_it_implements_the_backend_protocol():
    assert isinstance(ScriptedBackend(), Backend)


async def test_answers_come_in_script_order_and_every_request_is_recorded():
    backend = ScriptedBackend(text("one"), LLMResult(text="two"))
    assert [(await ask(backend, "a")).text, (await ask(backend, "b")).text] == ["one", "two"]
    assert [r.messages[-1]["content"] for r in backend.requests] == ["a", "b"]
    backend.check()


async def test_an_unexpected_call_fails_the_call_and_then_the_check():
    backend = ScriptedBackend()
    with pytest.raises(AssertionError, match=r"unexpected LLM call.*surprise"):
        await ask(backend, "surprise")
    assert [r.messages[-1]["content"] for r in backend.unexpected] == ["surprise"]
    with pytest.raises(AssertionError, match="1 unexpected LLM call"):
        backend.check()


async def test_an_unexpected_call_through_a_kernel_reaches_the_caller_as_a_backend_error():
    backend = ScriptedBackend(text("only one"))
    async with Kernel(KernelConfig(backends=[]), backends={"scripted": backend}, entry_points=False):
        assert (await sdk.llm_chat(USER)).text == "only one"
        with pytest.raises(BackendError, match="unexpected LLM call"):
            await sdk.llm_chat(USER)
    assert len(backend.unexpected) == 1


async def test_an_unused_answer_fails_the_check():
    backend = ScriptedBackend(text("used"), text("never asked"))
    await ask(backend)
    assert backend.remaining == 1
    with pytest.raises(AssertionError, match=r"1 scripted answer.*never asked for"):
        backend.check()


async def test_text_streams_word_by_word_and_the_pieces_are_its_segments():
    backend = ScriptedBackend(text("It is  sunny.\n"))
    pieces: list[str] = []
    result = await ask(backend, pieces=pieces)
    assert pieces == result.segments == ["It ", "is  ", "sunny.\n"]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 3)
    assert result.model == "scripted-model"


async def test_explicit_pieces_stream_as_given_and_empty_ones_are_skipped():
    backend = ScriptedBackend(text("Hello", pieces=["Hel", "", "lo"]), Reply(LLMResult(text="whole")))
    first: list[str] = []
    second: list[str] = []
    await ask(backend, pieces=first)
    await ask(backend, pieces=second)
    assert (first, second) == (["Hel", "lo"], ["whole"])


def test_pieces_that_do_not_join_to_the_text_are_refused():
    with pytest.raises(InvalidRequestError) as info:
        text("Hello", pieces=["Help"])
    assert info.value.field == "pieces"


async def test_a_tool_call_streams_nothing_unless_asked_to_stream_its_json():
    backend = ScriptedBackend(
        tool_call("add", {"a": 1}, call_id="call_9"), tool_call("add", '{"a": 2}', stream_json=True)
    )
    quiet: list[str] = []
    loud: list[str] = []
    first = await ask(backend, pieces=quiet)
    second = await ask(backend, pieces=loud)
    assert quiet == [] and loud == ['{"name": "add", "arguments": {"a": 2}}']
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [("call_9", "add", '{"a": 1}')]
    assert (first.finish_reason, first.usage.prompt_tokens, first.usage.completion_tokens) == (
        "tool_calls",
        13,
        7,
    )
    assert second.tool_calls[0].id == "call_1"


async def test_callable_answers_see_the_request_and_may_be_async():
    def echo(request: LLMRequest) -> LLMResult:
        return LLMResult(text=f"echo {request.messages[-1]['content']}")

    async def later(request: LLMRequest) -> Reply:
        await asyncio.sleep(0)
        return text("late", pieces=["la", "te"])

    backend = ScriptedBackend(echo, later)
    pieces: list[str] = []
    assert (await ask(backend, "ping")).text == "echo ping"
    assert (await ask(backend, pieces=pieces)).text == "late"
    assert pieces == ["la", "te"]
    backend.check()


async def test_a_callable_may_raise_to_script_a_failure():
    def fail(request: LLMRequest) -> LLMResult:
        raise BackendError("scripted outage", backend="scripted", retryable=True)

    backend = ScriptedBackend(fail)
    with pytest.raises(BackendError, match="scripted outage"):
        await ask(backend)
    backend.check()


async def test_requests_are_recorded_as_sent_and_answers_are_not_shared():
    answer = LLMResult(text="same", usage=Usage(1, 1))
    backend = ScriptedBackend(answer, answer)
    request = LLMRequest(messages=[{"role": "user", "content": "before"}])
    first = await backend.generate(request, control=SliceControl.unlimited())
    request.messages[0]["content"] = "after"
    assert isinstance(first, Completed)
    first.result.backend = "changed by the dispatcher"
    second = await ask(backend)
    assert backend.requests[0].messages[0]["content"] == "before"
    assert (second.backend, answer.backend) == ("", "")


def test_a_script_entry_of_the_wrong_type_is_refused_by_position():
    with pytest.raises(InvalidRequestError) as info:
        ScriptedBackend(text("ok"), ["a list is not an answer"])  # type: ignore[arg-type]
    assert info.value.field == "answers[1]"


def test_word_pieces_join_back_to_the_text():
    for value in ["", "   ", "one", " lead and trail ", "a\nb  c"]:
        assert "".join(word_pieces(value)) == value
    assert word_pieces("one two") == ["one ", "two"]
