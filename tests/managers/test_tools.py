"""ToolManager, tool schemas, argument validation, caps and timeouts; built-in calculator and file tools."""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from typing import Any, Literal

import pluggy
import pytest

from aios.clock import FakeClock
from aios.errors import ConfigError, DeadlineExceededError, InvalidRequestError
from aios.managers import builtin_tools
from aios.managers.builtin_tools import calculator, evaluate, make_file_tool
from aios.managers.tools import Tool, ToolManager, calling_agent, load_plugin_tools, tool

pytestmark = pytest.mark.timeout(30)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def search(
    query: str,
    limit: int = 10,
    scale: float = 1.0,
    exact: bool = False,
    tags: list[str] | None = None,
    weights: dict[str, float] | None = None,
    mode: Literal["fast", "slow"] = "fast",
    color: Color = Color.RED,
) -> dict[str, Any]:
    """Search the notes for a query.

    Everything after the first paragraph stays out of the description.

    Args:
        query: What to look for.
        limit: At most this many
            results.
        scale (float): Score multiplier.
        exact: Match whole words only.
        tags: Only notes with all these tags.
        weights: Per-field weights.
        mode: Speed or recall.
        color: The highlight color.

    Returns:
        The hits.
    """
    return {
        "query": query,
        "limit": limit,
        "scale": scale,
        "tags": tags,
        "mode": mode,
        "color_is_enum": isinstance(color, Color),
        "scale_is_float": isinstance(scale, float),
    }


def make_manager(*tools: Tool, clock: FakeClock | None = None) -> ToolManager:
    return ToolManager(tools, clock=clock)


# --- schemas -----------------------------------------------------------------------------------


def test_schema_comes_from_type_hints_and_google_docstring() -> None:
    t = Tool.from_function(search)
    assert t.name == "search"
    assert t.description == "Search the notes for a query."
    assert t.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "description": "At most this many results.", "default": 10},
            "scale": {"type": "number", "description": "Score multiplier.", "default": 1.0},
            "exact": {"type": "boolean", "description": "Match whole words only.", "default": False},
            "tags": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "Only notes with all these tags.",
                "default": None,
            },
            "weights": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "number"},
                "description": "Per-field weights.",
                "default": None,
            },
            "mode": {
                "type": "string",
                "enum": ["fast", "slow"],
                "description": "Speed or recall.",
                "default": "fast",
            },
            "color": {
                "type": "string",
                "enum": ["red", "blue"],
                "description": "The highlight color.",
                "default": "red",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    assert t.spec() == {
        "type": "function",
        "function": {"name": "search", "description": t.description, "parameters": t.parameters},
    }


def test_optional_scalar_becomes_a_type_list_with_null() -> None:
    @tool
    def f(x: int | None = None) -> int:
        """Echo."""
        return x or 0

    assert f.parameters["properties"]["x"] == {"type": ["integer", "null"], "default": None}


def test_decorator_options_set_name_caps_and_timeout() -> None:
    @tool(name="add_numbers", concurrency=1, timeout=2.5)
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    assert (add.name, add.concurrency, add.timeout) == ("add_numbers", 1, 2.5)
    assert add(2, 3) == 5


@pytest.mark.parametrize(
    "annotation",
    ["set[int]", "tuple[int, int]", "bytes", "list", "dict[int, str]", "int | str", "object"],
)
def test_unsupported_annotation_is_rejected_at_definition_naming_the_parameter(annotation: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f'def f(ok: int, bad: {annotation}) -> int:\n    """Doc."""\n    return 1', namespace)
    with pytest.raises(ConfigError) as e:
        Tool.from_function(namespace["f"])
    assert e.value.field == "parameters.bad"
    assert "'bad'" in str(e.value)


def test_missing_annotation_is_rejected_at_definition_naming_the_parameter() -> None:
    def f(ok: int, loose) -> int:  # type: ignore[no-untyped-def]
        """Doc."""
        return 1

    with pytest.raises(ConfigError) as e:
        tool(f)
    assert e.value.field == "parameters.loose"
    assert "no type annotation" in str(e.value)


def test_varargs_docstring_typos_and_bad_defaults_are_rejected_at_definition() -> None:
    def star(*items: int) -> int:
        """Doc."""
        return 0

    def typo(x: int) -> int:
        """Doc.

        Args:
            y: Not a parameter.
        """
        return x

    def bad_default(x: int = None) -> int:  # type: ignore[assignment]  # noqa: RUF013
        """Doc."""
        return 0

    fields = []
    for fn in (star, typo, bad_default):
        with pytest.raises(ConfigError) as e:
            tool(fn)
        fields.append(e.value.field)
    assert fields == ["parameters.items", "parameters.y", "parameters.x"]


def test_tool_without_description_or_with_bad_name_is_rejected() -> None:
    def nodoc(x: int) -> int:
        return x

    with pytest.raises(ConfigError) as e:
        tool(nodoc)
    assert e.value.field == "description"
    with pytest.raises(ConfigError) as e:
        tool(name="has space")(search)
    assert e.value.field == "name"


# --- argument validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field", "message"),
    [
        (
            {"query": "abc", "limit": "abc"},
            "arguments.limit",
            "arguments.limit must be an integer, got 'abc'",
        ),
        ({"query": "abc", "exact": 1}, "arguments.exact", "arguments.exact must be a boolean, got 1"),
        ({"query": 3}, "arguments.query", "arguments.query must be a string, got 3"),
        ({"limit": 3}, "arguments.query", "arguments.query is required"),
        ({"query": "a", "colour": "red"}, "arguments.colour", "arguments.colour is not a known parameter"),
        ({"query": "a", "mode": "medium"}, "arguments.mode", "must be one of 'fast', 'slow', got 'medium'"),
        ({"query": "a", "color": "green"}, "arguments.color", "must be one of 'red', 'blue'"),
        ({"query": "a", "tags": ["x", 2]}, "arguments.tags[1]", "arguments.tags[1] must be a string, got 2"),
        ({"query": "a", "tags": "x"}, "arguments.tags", "arguments.tags must be an array or null, got 'x'"),
        ({"query": "a", "weights": {"w": "heavy"}}, "arguments.weights.w", "must be a number, got 'heavy'"),
        ("{not json", "arguments", "not valid JSON"),
        ("[1, 2]", "arguments", "must be a JSON object"),
    ],
)
async def test_invalid_arguments_are_rejected_before_the_tool_runs_naming_the_field(
    arguments: Any, field: str, message: str
) -> None:
    ran = []

    @tool
    def probe(
        query: str,
        limit: int = 10,
        exact: bool = False,
        tags: list[str] | None = None,
        weights: dict[str, float] | None = None,
        mode: Literal["fast", "slow"] = "fast",
        color: Color = Color.RED,
    ) -> int:
        """Record that it ran."""
        ran.append(query)
        return 0

    mgr = make_manager(probe)
    with pytest.raises(InvalidRequestError) as e:
        await mgr.call("probe", arguments, agent="a1")
    assert e.value.field == field
    assert message in str(e.value)
    assert e.value.agent == "a1"
    assert ran == []
    assert mgr.metrics()["probe"].rejected == 1


def test_nested_list_items_are_checked_with_their_index() -> None:
    @tool
    def grid(rows: list[list[int]]) -> int:
        """Sum a grid."""
        return sum(map(sum, rows))

    with pytest.raises(InvalidRequestError) as e:
        grid.validate({"rows": [[1, 2], [3, "4"]]})
    assert e.value.field == "arguments.rows[1][1]"
    assert str(e.value) == "arguments.rows[1][1] must be an integer, got '4'"


async def test_json_arguments_are_converted_to_enum_members_and_floats() -> None:
    mgr = make_manager(Tool.from_function(search))
    result = await mgr.call("search", '{"query": "q", "scale": 2, "color": "blue", "limit": 3.0}', agent="a")
    assert result.ok, result.error
    assert result.value == {
        "query": "q",
        "limit": 3,
        "scale": 2.0,
        "tags": None,
        "mode": "fast",
        "color_is_enum": True,
        "scale_is_float": True,
    }


async def test_unknown_tool_is_an_invalid_request_listing_the_available_tools() -> None:
    mgr = make_manager(calculator)
    with pytest.raises(InvalidRequestError) as e:
        await mgr.call("calculater", {}, agent="a")
    assert e.value.field == "name"
    assert "available: calculator" in str(e.value)


# --- registration and plugins ------------------------------------------------------------------


def test_registration_returns_an_undo_that_removes_only_its_own_tool() -> None:
    mgr = ToolManager()
    undo = mgr.register(calculator)
    assert [s["function"]["name"] for s in mgr.list_tools()] == ["calculator"]
    with pytest.raises(ConfigError) as e:
        mgr.register(calculator)
    assert e.value.field == "name"
    undo()
    assert mgr.names() == []
    mgr.register(calculator)
    undo()  # stale undo: the newer registration stays
    assert mgr.names() == ["calculator"]
    assert mgr.unregister("calculator") is calculator
    with pytest.raises(InvalidRequestError):
        mgr.unregister("calculator")


def test_register_many_is_all_or_nothing() -> None:
    mgr = ToolManager()
    with pytest.raises(ConfigError):
        mgr.register_many([calculator, Tool.from_function(search), calculator])
    assert mgr.names() == []
    undo = mgr.register_many([calculator, search])
    assert mgr.names() == ["calculator", "search"]
    undo()
    assert mgr.names() == []


def test_plugins_contribute_tools_through_the_aios_tools_hook() -> None:
    hookimpl = pluggy.HookimplMarker("aios")

    class ThirdParty:
        @hookimpl
        def aios_tools(self) -> list[Any]:
            def shout(text: str) -> str:
                """Upper-case a text."""
                return text.upper()

            return [shout]

    pm = pluggy.PluginManager("aios")
    assert load_plugin_tools(pm) == []
    pm.register(builtin_tools)
    pm.register(ThirdParty(), name="third")
    assert sorted(t.name for t in load_plugin_tools(pm)) == ["calculator", "python", "shout"]


def test_a_plugin_returning_junk_is_a_config_error_naming_the_plugin() -> None:
    hookimpl = pluggy.HookimplMarker("aios")

    class Broken:
        @hookimpl
        def aios_tools(self) -> list[Any]:
            return [42]

    pm = pluggy.PluginManager("aios")
    pm.register(Broken(), name="broken-plugin")
    with pytest.raises(ConfigError) as e:
        load_plugin_tools(pm)
    assert "broken-plugin" in str(e.value)


# --- running: caps, timeouts, errors -----------------------------------------------------------


async def test_concurrency_one_runs_ten_agents_strictly_one_at_a_time_without_blocking_others() -> None:
    active = 0
    seen_max = 0
    ticks = 0
    ticks_during: list[int] = []

    @tool(concurrency=1)
    async def exclusive(n: int) -> int:
        """Hold the only slot for a few loop turns."""
        nonlocal active, seen_max
        active += 1
        seen_max = max(seen_max, active)
        before = ticks
        for _ in range(5):
            await asyncio.sleep(0)
        ticks_during.append(ticks - before)
        active -= 1
        return n * 2

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    mgr = make_manager(exclusive)
    tick_task = asyncio.create_task(ticker())
    results = await asyncio.gather(*(mgr.call("exclusive", {"n": i}, agent=f"agent{i}") for i in range(10)))
    tick_task.cancel()
    assert [r.value for r in results] == [i * 2 for i in range(10)]
    assert seen_max == 1
    assert mgr.metrics()["exclusive"].max_in_flight == 1
    assert mgr.metrics()["exclusive"].calls == 10
    # The other coroutine kept running while each call held the slot and the rest waited.
    assert all(t >= 3 for t in ticks_during)
    assert max(r.queued_s for r in results) > 0


async def test_concurrency_three_never_exceeds_three_in_flight() -> None:
    active, seen = 0, 0
    gate = asyncio.Event()

    @tool(concurrency=3)
    async def capped() -> int:
        """Wait for the gate."""
        nonlocal active, seen
        active += 1
        seen = max(seen, active)
        await gate.wait()
        active -= 1
        return 1

    mgr = make_manager(capped)
    calls = [asyncio.create_task(mgr.call("capped", {}, agent="a")) for _ in range(8)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert (active, mgr.metrics()["capped"].in_flight) == (3, 3)
    gate.set()
    assert sum(r.value for r in await asyncio.gather(*calls)) == 8
    assert seen == 3


async def test_sync_tool_runs_in_a_thread_and_does_not_block_the_loop() -> None:
    released = threading.Event()

    @tool
    def blocking() -> str:
        """Block until the event loop releases it."""
        return "released" if released.wait(10) else "loop was blocked"

    mgr = make_manager(blocking)
    call = asyncio.create_task(mgr.call("blocking", {}, agent="a"))
    await asyncio.sleep(0)
    released.set()  # only possible if the loop is free while the tool blocks
    result = await call
    assert result.value == "released"


async def test_timeout_returns_an_error_result_promptly() -> None:
    @tool(timeout=0.2)
    async def hang() -> None:
        """Never finish."""
        await asyncio.Event().wait()

    mgr = make_manager(hang)
    start = time.monotonic()
    result = await mgr.call("hang", {}, agent="a")
    assert time.monotonic() - start < 5
    assert not result.ok
    assert result.error is not None and result.error.type == "ToolTimeoutError"
    assert result.content().startswith("Error: ToolTimeoutError: tool 'hang' did not finish within 0.2 s")
    m = mgr.metrics()["hang"]
    assert (m.timeouts, m.errors, m.in_flight) == (1, 1, 0)


async def test_a_timed_out_tool_keeps_its_slot_until_its_work_really_stops() -> None:
    stop = threading.Event()

    @tool(timeout=0.1, concurrency=1)
    def stuck() -> str:
        """Ignore the timeout (threads cannot be stopped)."""
        stop.wait(10)
        return "late"

    mgr = make_manager(stuck)
    result = await mgr.call("stuck", {}, agent="a")
    assert result.error is not None and result.error.type == "ToolTimeoutError"
    assert mgr.metrics()["stuck"].in_flight == 1
    stop.set()
    for _ in range(500):
        if mgr.metrics()["stuck"].in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert mgr.metrics()["stuck"].in_flight == 0


async def test_a_tool_that_swallows_cancellation_still_does_not_hang_its_caller() -> None:
    finish = asyncio.Event()

    @tool(timeout=0.1)
    async def stubborn() -> str:
        """Refuse to be cancelled once."""
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await finish.wait()
        return "done"

    mgr = make_manager(stubborn)
    result = await mgr.call("stubborn", {}, agent="a")
    assert result.error is not None and result.error.type == "ToolTimeoutError"
    assert mgr.metrics()["stubborn"].in_flight == 1
    finish.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert mgr.metrics()["stubborn"].in_flight == 0


async def test_a_raising_tool_returns_an_error_result_naming_the_exception() -> None:
    @tool
    def divide(a: int, b: int) -> float:
        """Divide."""
        return a / b

    @tool
    async def own_timeout() -> None:
        """Raise a TimeoutError of its own (not the manager's)."""
        raise TimeoutError("upstream slow")

    @tool
    async def self_cancel() -> None:
        """Cancel itself from inside."""
        raise asyncio.CancelledError

    mgr = make_manager(divide, own_timeout, self_cancel)
    result = await mgr.call("divide", {"a": 1, "b": 0}, agent="a")
    assert not result.ok
    assert str(result.error) == "ZeroDivisionError: division by zero"
    assert (await mgr.call("divide", {"a": 1, "b": 4}, agent="a")).value == 0.25
    other = await mgr.call("own_timeout", {}, agent="a")
    assert str(other.error) == "TimeoutError: upstream slow"
    assert mgr.metrics()["divide"].errors == 1
    assert mgr.metrics()["own_timeout"].timeouts == 0
    cancelled = await mgr.call("self_cancel", {}, agent="a")
    assert cancelled.error is not None and cancelled.error.type == "ToolCancelledError"


async def test_a_non_json_return_value_is_an_error_result() -> None:
    @tool
    def weird() -> object:
        """Return something JSON cannot hold."""
        return {"when": object()}

    result = await make_manager(weird).call("weird", {}, agent="a")
    assert result.error is not None and result.error.type == "ToolResultError"


async def test_deadline_passed_or_hit_while_waiting_raises_deadline_exceeded() -> None:
    clock = FakeClock(100.0)
    gate = asyncio.Event()

    @tool(concurrency=1)
    async def slot() -> int:
        """Hold the slot until the gate opens."""
        await gate.wait()
        return 1

    mgr = make_manager(slot, clock=clock)
    with pytest.raises(DeadlineExceededError):
        await mgr.call("slot", {}, agent="a", deadline=99.0)
    holder = asyncio.create_task(mgr.call("slot", {}, agent="a"))
    await asyncio.sleep(0)
    with pytest.raises(DeadlineExceededError) as e:
        await mgr.call("slot", {}, agent="b", deadline=clock.now() + 0.05)
    assert "waiting for a free slot" in str(e.value)
    gate.set()
    assert (await holder).value == 1


async def test_the_calling_agent_is_visible_inside_sync_and_async_tools() -> None:
    @tool
    def who_sync() -> str | None:
        """Name the caller."""
        return calling_agent()

    @tool
    async def who_async() -> str | None:
        """Name the caller."""
        return calling_agent()

    mgr = make_manager(who_sync, who_async)
    assert (await mgr.call("who_sync", {}, agent="alice")).value == "alice"
    assert (await mgr.call("who_async", None, agent="bob")).value == "bob"
    assert calling_agent() is None


async def test_tool_call_runs_a_single_tool_without_a_manager() -> None:
    result = await calculator.call('{"expression": "6*7"}', agent="a")
    assert (result.ok, result.value, result.content()) == (True, 42, "42")


# --- calculator --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 ** 10", 1024),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("10 / 4", 2.5),
        ("-(3) + +2", -1),
        ("sqrt(16)", 4.0),
        ("factorial(5)", 120),
        ("round(pi, 2)", 3.14),
        ("max(1, 5, 3)", 5),
        ("2 ** -1", 0.5),
        ("12345678901234567890 * 98765432109876543210", 12345678901234567890 * 98765432109876543210),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "'__import__' is not an allowed function"),
        ("(1).__class__", "Attribute is not allowed"),
        ("'a' * 10", "only numbers are allowed"),
        ("9**9**9", "the limit is 10000"),
        ("10 ** 1000000", "the limit is 10000"),
        ("2 ** 6000 * 2 ** 6000", "the limit is 10000"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "sqrt(): math domain error"),
        ("10.0 ** 400", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("x + 1", "unknown name 'x'"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 2000, "longer than 1000"),
        ("factorial(10**6)", "factorial needs an integer from 0 to 1000"),
    ],
)
def test_calculator_refuses_unsafe_or_huge_input_with_a_clear_error(expression: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(ValueError) as e:
        evaluate(expression)
    assert message in str(e.value)
    assert time.monotonic() - start < 1


async def test_calculator_tool_feeds_a_refusal_back_as_an_error_result() -> None:
    result = await make_manager(calculator).call("calculator", {"expression": "__import__('os')"}, agent="a")
    assert not result.ok
    assert result.error is not None and result.error.type == "ValueError"
    assert "not an allowed function" in result.error.message


# --- file tool ---------------------------------------------------------------------------------


async def test_file_tool_reads_writes_and_lists_through_the_bound_storage() -> None:
    store: dict[str, bytes] = {}

    async def read(path: str) -> bytes:
        return store[path]

    async def write(path: str, data: bytes) -> int:
        store[path] = data
        return len(data)

    async def list_(prefix: str) -> list[str]:
        return sorted(k for k in store if k.startswith(prefix))

    mgr = make_manager(make_file_tool(read, write, list_, max_read_bytes=8))
    w = await mgr.call("file", {"action": "write", "path": "notes/a.txt", "content": "héllo"}, agent="a")
    assert w.value == {"path": "notes/a.txt", "bytes_written": 6}
    await mgr.call("file", {"action": "write", "path": "b.txt", "content": "0123456789"}, agent="a")
    assert store["notes/a.txt"] == "héllo".encode()
    r = await mgr.call("file", {"action": "read", "path": "notes/a.txt"}, agent="a")
    assert r.value == {"path": "notes/a.txt", "size": 6, "content": "héllo", "truncated": False}
    long = await mgr.call("file", {"action": "read", "path": "b.txt"}, agent="a")
    assert long.value["content"] == "01234567" and long.value["truncated"] is True
    listed = await mgr.call("file", {"action": "list", "path": "notes/"}, agent="a")
    assert listed.value == {"paths": ["notes/a.txt"]}
    missing = await mgr.call("file", {"action": "read", "path": "nope"}, agent="a")
    assert missing.error is not None and missing.error.type == "KeyError"
    no_content = await mgr.call("file", {"action": "write", "path": "x"}, agent="a")
    assert no_content.error is not None and "content is required" in no_content.error.message
    with pytest.raises(InvalidRequestError) as e:
        await mgr.call("file", {"action": "delete", "path": "x"}, agent="a")
    assert e.value.field == "arguments.action"
