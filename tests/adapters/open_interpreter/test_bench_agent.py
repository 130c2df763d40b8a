"""The ``open_interpreter`` benchmark agent: Open Interpreter's own agent, with and without the kernel."""

from __future__ import annotations

import pytest

from tests.adapters.open_interpreter.support import REASON, import_warnings_ignored

with import_warnings_ignored():
    pytest.importorskip("interpreter", reason=REASON)
    # The agent imports these lazily, in its thread: loaded here, where the warnings are silenced.
    import interpreter.core.core  # noqa: F401
    import litellm  # noqa: F401

import json
from pathlib import Path
from typing import Any

from aios.backends.scripted import ScriptedBackend, text
from aios.managers.tools import Tool
from tests.adapters.bench_support import (
    MODEL_ACTIONS,
    OneTask,
    Ran,
    accounting,
    add,
    backend_failure,
    bench_run,
    model_runs,
    on_the_model,
    python_tools,
    sent,
)
from tests.adapters.open_interpreter.scripted import execute

pytestmark = pytest.mark.timeout(120)


async def oi_run(
    tmp_path: Path, backend: ScriptedBackend, *, kernel: bool, bench: OneTask | None = None, **settings: Any
) -> Ran:
    """The agent on the one task (default: 6*7 with ``python``, 4 steps)."""
    bench = bench or OneTask(python_tools(), max_steps=4)
    return await bench_run(
        tmp_path, "open_interpreter", backend=backend, kernel=kernel, bench=bench, **settings
    )


SCRIPT = (execute("print(6*7)"), execute("42", language="finish"))


async def test_python_then_finish_answers_42_alike_with_and_without_the_kernel(tmp_path: Path):
    backends = {k: ScriptedBackend(*SCRIPT) for k in (True, False)}
    runs = {k: await oi_run(tmp_path, backend, kernel=k) for k, backend in backends.items()}
    for kernel, (record, _) in runs.items():
        assert record["status"] == "done" and record["error"] is None, kernel
        assert record["answer"] == "42" and record["success"] is True
        python_step, finish_step = record["steps"]
        assert python_step == {
            "index": 0,
            "thought": "",
            "action": "python",
            "arguments": {"code": "print(6*7)"},
            "observation": '{"output": "42", "exit_code": 0}',
        }
        assert finish_step["action"] == "finish" and finish_step["arguments"] == {"answer": "42"}
        assert accounting(record) == {
            "llm_calls": 2,
            "tool_calls": 2,
            "prompt_tokens": 26,
            "completion_tokens": 14,
        }
    assert sent(backends[True]) == sent(backends[False])
    # Open Interpreter's execute tool lists the episode's tools as its languages.
    (execute_tool,) = backends[True].requests[0].tools or []
    assert execute_tool["function"]["parameters"]["properties"]["language"]["enum"] == ["python", "finish"]
    assert backends[True].requests[0].tool_choice == {"type": "function", "function": {"name": "execute"}}
    # The kernel saw the two LLM calls and the two tool calls (one per execution).
    assert runs[True].meta["kernel_stats"]["latency"]["count"] == 4
    assert "kernel_stats" not in runs[False].meta


@pytest.mark.parametrize("kernel", [True, False])
async def test_model_mistakes_are_observations_and_a_rejected_finish_does_not_end_the_run(
    tmp_path: Path, kernel: bool
):
    async def finish(answer: str) -> str:
        """Propose the answer.

        Args:
            answer: The answer.
        """
        if answer != "42":
            raise ValueError("wrong answer, try again")
        return "accepted"

    bench = OneTask(python_tools(Tool.from_function(add)), finish=Tool.from_function(finish), max_steps=6)
    backend = ScriptedBackend(
        execute('{"a": "six", "b": 7}', language="add"),  # not an integer
        execute("six and seven", language="add"),  # not JSON, and add has two parameters
        execute("puts 6*7", language="ruby"),  # no such tool
        execute("41", language="finish"),  # rejected by the environment
        execute('{"a": 35, "b": 7}', language="add"),
        execute("42", language="finish"),
    )
    record, _ = await oi_run(tmp_path, backend, kernel=kernel, bench=bench, max_steps=6)
    assert record["status"] == "done" and record["answer"] == "42"
    steps = record["steps"]
    assert [s["action"] for s in steps] == ["add", "add", "ruby", "finish", "add", "finish"]
    assert steps[0]["observation"].startswith("Error: ") and "integer" in steps[0]["observation"]
    assert "JSON object" in steps[1]["observation"]
    assert "not supported" in steps[2]["observation"]
    assert steps[3]["observation"] == "Error: ValueError: wrong answer, try again"
    assert steps[4]["arguments"] == {"a": 35, "b": 7} and steps[4]["observation"] == "42"
    assert steps[5]["observation"] == "accepted"
    # Only the calls that fit a tool ran one: the two finishes and the last add.
    assert record["llm_calls"] == 6 and record["tool_calls"] == 3


@pytest.mark.parametrize("kernel", [True, False])
async def test_the_step_budget_caps_the_model_turns_and_the_last_text_is_the_answer(
    tmp_path: Path, kernel: bool
):
    # The budget is the smaller of the run's (5) and the episode's (2) steps: a third turn is never asked for.
    bench = OneTask(python_tools(), max_steps=2)
    backend = ScriptedBackend(execute("print(6*7)"), execute("print(7*6)"))
    record, _ = await oi_run(tmp_path, backend, kernel=kernel, bench=bench, max_steps=5)
    assert len(backend.requests) == 2 and record["llm_calls"] == 2 and record["tool_calls"] == 2
    assert [s["index"] for s in record["steps"]] == [0, 1] and record["answer"] is None

    backend = ScriptedBackend(execute("print(6*7)"), text("FINAL ANSWER: 42"))
    record, _ = await oi_run(tmp_path / "text", backend, kernel=kernel, bench=bench)
    assert record["answer"] == "FINAL ANSWER: 42" and record["success"] is False
    assert record["steps"][1] == {
        "index": 1,
        "thought": "FINAL ANSWER: 42",
        "action": "",
        "arguments": {},
        "observation": "",
    }


@pytest.mark.parametrize("kernel", [True, False])
async def test_a_backend_error_is_recorded_as_an_error_after_one_attempt(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(backend_failure("the backend is down"))
    record, _ = await oi_run(tmp_path, backend, kernel=kernel)
    assert record["status"] == "error" and "the backend is down" in record["error"]
    assert len(backend.requests) == 1 and record["answer"] is None


@on_the_model
async def test_the_real_model_runs_with_and_without_the_kernel(tmp_path: Path):
    for ran in await model_runs(tmp_path, "open_interpreter", together=True):
        assert 1 <= ran.record["llm_calls"] <= 2
        # The first turn is forced to execute, so the model acted through the episode's tools.
        assert ran.record["steps"][0]["action"] in {"python", "finish"}
        assert all(s["action"] in MODEL_ACTIONS for s in ran.record["steps"])


def test_each_call_gets_its_own_copy_of_the_execute_schema_with_its_languages():
    from interpreter.core.llm.run_tool_calling_llm import tool_schema

    from aios.benchmarks.agents.open_interpreter import own_schema

    received: list[dict[str, Any]] = []
    before = json.dumps(tool_schema)
    completions = own_schema(lambda **params: received.append(params), ["python", "finish"])
    completions(model="m", messages=[], tools=[tool_schema])
    (schema,) = received[0]["tools"]
    assert schema["function"]["parameters"]["properties"]["language"]["enum"] == ["python", "finish"]
    assert schema is not tool_schema and json.dumps(tool_schema) == before
