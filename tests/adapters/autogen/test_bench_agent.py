"""The ``autogen`` benchmark agent (ag2's AssistantAgent + UserProxyAgent) with and without the kernel.

Scripted runs pin the protocol: tool calls routed to the episode's tools, the answer taken from
``finish``, model mistakes turned into observations, the turn budget, and the same accounting in
both modes. One run on the real embedded model checks the whole pipeline end to end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.benchmarks.agents.autogen import FORCE_FINISH, NO_TOOL
from aios.errors import KernelInternalError
from aios.managers.tools import Tool
from tests.adapters.bench_support import (
    MODEL_ACTIONS,
    OneTask,
    Ran,
    accounting,
    backend_failure,
    bench_run,
    model_runs,
    on_the_model,
    sent,
    tool_names,
)

pytest.importorskip("autogen", reason="AutoGen classic (ag2[openai]<1) is not installed")

MODES = pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "direct"])


async def ag_run(tmp_path: Path, backend: ScriptedBackend, *, kernel: bool, **options: Any) -> Ran:
    """The autogen agent on the one task (6*7 with ``add``, or ``bench``)."""
    return await bench_run(tmp_path, "autogen", backend=backend, kernel=kernel, **options)


def actions(record: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    return [(s["action"], s["arguments"], s["observation"]) for s in record["steps"]]


@MODES
async def test_a_tool_call_then_finish_answers_with_the_tools_real_observation(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(
        tool_call("add", {"a": 40, "b": 2}, said="Add them."),
        tool_call("finish", {"answer": "42"}, call_id="c2"),
    )

    record, meta = await ag_run(tmp_path, backend, kernel=kernel)

    assert record["status"] == "done" and record["error"] is None
    assert record["answer"] == "42" and record["success"] is True
    assert actions(record) == [("add", {"a": 40, "b": 2}, "42"), ("finish", {"answer": "42"}, "42")]
    assert record["steps"][0]["thought"] == "Add them." and record["steps"][0]["index"] == 0
    assert record["llm_calls"] == 2 and record["tool_calls"] == 2
    # Every turn offered the episode's tools plus finish, with the call forced, as ReAct does.
    first = backend.requests[0]
    assert tool_names(first) == ["add", "finish"]
    assert first.tool_choice == "required" and first.max_tokens == 32
    assert first.messages[-1]["role"] == "user" and "6*7" in str(first.messages[-1]["content"])
    if kernel:
        # run.json's kernel summary counts the agent's syscalls: 2 LLM calls and 2 tool calls.
        assert meta["kernel_stats"]["latency"]["count"] == 4


async def test_both_modes_count_the_same_calls_and_send_the_backend_the_same_requests(tmp_path: Path):
    def script() -> ScriptedBackend:
        return ScriptedBackend(
            tool_call("add", {"a": 6, "b": 36}, prompt_tokens=20, completion_tokens=9),
            text("Thinking.", prompt_tokens=30),
            tool_call("finish", {"answer": "42"}, call_id="c3", prompt_tokens=40, completion_tokens=5),
        )

    seen: list[tuple[Any, ...]] = []
    for kernel in (True, False):
        backend = script()
        record, _ = await ag_run(tmp_path, backend, kernel=kernel)
        seen.append((accounting(record), sent(backend), record["answer"]))

    with_kernel, without = seen
    assert with_kernel == without
    assert with_kernel[0] == {"llm_calls": 3, "tool_calls": 2, "prompt_tokens": 90, "completion_tokens": 15}


@MODES
async def test_model_mistakes_become_observations_and_the_run_goes_on(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(
        tool_call("add", {"a": "six", "b": 36}, call_id="c1"),
        tool_call("multiply", {"a": 6, "b": 7}, call_id="c2"),
        tool_call("add", '{"a": 6, "b":', call_id="c3"),
        text("I will answer now."),
        tool_call("finish", {"answer": "42"}, call_id="c5"),
    )

    record, _ = await ag_run(tmp_path, backend, kernel=kernel, max_steps=6)

    assert record["status"] == "done" and record["answer"] == "42" and record["success"] is True
    steps = actions(record)
    assert [s[0] for s in steps] == ["add", "multiply", "add", "", "finish"]
    assert steps[0][2].startswith("invalid arguments for add") and "'six'" in steps[0][2]
    assert "multiply" in steps[1][2] and "not found" in steps[1][2]
    assert steps[2][1] == {} and "JSON" in steps[2][2]
    assert steps[3][2] == NO_TOOL and record["steps"][3]["thought"] == "I will answer now."
    # The model saw each mistake as the observation of its call.
    assert "not found" in json.dumps(backend.requests[2].messages)


@MODES
async def test_the_turn_budget_holds_and_its_last_turn_forces_finish(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(
        tool_call("add", {"a": 1, "b": 1}), tool_call("add", {"a": 2, "b": 2}, call_id="c2")
    )

    # ag_run checks the script: a third call would be unscripted.
    record, _ = await ag_run(tmp_path, backend, kernel=kernel, max_steps=2)

    assert record["llm_calls"] == 2 and record["answer"] is None and record["success"] is False
    assert [r.tool_choice for r in backend.requests] == ["required", FORCE_FINISH]
    # The last proposed call still ran: its observation is recorded.
    assert actions(record)[-1] == ("add", {"a": 2, "b": 2}, "4")


async def test_the_episode_budget_caps_the_settings_and_forcing_can_be_turned_off(tmp_path: Path):
    backend = ScriptedBackend(text("Let me think."))
    bench = OneTask(max_steps=1)

    record, _ = await ag_run(tmp_path, backend, kernel=False, bench=bench, answer_on_last_step=False)

    assert [r.tool_choice for r in backend.requests] == ["required"]
    # No finish: the answer is the agent's last text (the chat ended before the proxy replied).
    assert record["answer"] == "Let me think." and actions(record) == [("", {}, "")]


@MODES
async def test_an_environment_finish_that_refuses_an_answer_lets_the_agent_try_again(
    tmp_path: Path, kernel: bool
):
    accepted: list[str] = []

    async def finish(answer: str) -> str:
        """Propose the answer.

        Args:
            answer: The answer.
        """
        if answer != "42":
            raise ValueError("wrong answer, try again")
        accepted.append(answer)
        return "correct"

    bench = OneTask(finish=Tool.from_function(finish, name="finish"), is_done=lambda: bool(accepted))
    backend = ScriptedBackend(
        tool_call("finish", {"answer": "41"}), tool_call("finish", {"answer": "42"}, call_id="c2")
    )

    record, _ = await ag_run(tmp_path, backend, kernel=kernel, bench=bench)

    assert record["answer"] == "42" and accepted == ["42"]
    assert [(s[1]["answer"], s[2].startswith("Error:")) for s in actions(record)] == [
        ("41", True),
        ("42", False),
    ]


@MODES
async def test_a_backend_failure_is_a_harness_error_not_a_finished_task(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(backend_failure("the model server went away"))

    record, meta = await ag_run(tmp_path, backend, kernel=kernel)

    assert record["status"] == "error" and "BackendError" in record["error"]
    assert len(backend.requests) == 1  # not retried behind the harness's back
    assert meta["status"] == "finished"


@on_the_model
async def test_the_embedded_model_runs_the_autogen_agent_with_and_without_the_kernel(tmp_path: Path):
    for record in (ran.record for ran in await model_runs(tmp_path, "autogen", task_timeout=120)):
        assert isinstance(record["success"], bool)
        assert 1 <= record["llm_calls"] <= 2
        assert record["steps"] and all(s["action"] in MODEL_ACTIONS for s in record["steps"])


@MODES
async def test_a_harness_error_in_a_tool_ends_the_run_instead_of_reaching_the_model(
    tmp_path: Path, kernel: bool, monkeypatch: pytest.MonkeyPatch
):
    def broken_runner(spec: Any, tool: Tool) -> Callable[[dict[str, Any]], Any]:
        async def run(arguments: dict[str, Any]) -> str:
            raise KernelInternalError("the sandbox is gone")

        return run

    monkeypatch.setattr("aios.benchmarks.agents.autogen.tool_runner", broken_runner)
    backend = ScriptedBackend(tool_call("add", {"a": 1, "b": 2}))

    # ag_run checks the script: no second turn after the failure.
    record, _ = await ag_run(tmp_path, backend, kernel=kernel)

    assert record["status"] == "error" and "the sandbox is gone" in record["error"]


@MODES
async def test_an_ag2_failure_on_what_the_model_wrote_ends_the_task_without_an_answer(
    tmp_path: Path, kernel: bool, monkeypatch: pytest.MonkeyPatch
):
    import autogen

    def choke(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("cannot handle this tool call")

    # Registered by every agent's constructor, so patching the class reaches the proxy built later.
    monkeypatch.setattr(autogen.ConversableAgent, "generate_tool_calls_reply", choke)
    backend = ScriptedBackend(tool_call("add", {"a": 1, "b": 2}, said="Adding."))

    record, _ = await ag_run(tmp_path, backend, kernel=kernel)

    assert record["status"] == "done" and record["answer"] is None and record["llm_calls"] == 1
    assert record["steps"][-1]["observation"] == "the agent failed: ValueError: cannot handle this tool call"


@MODES
async def test_a_timed_out_agent_stops_its_chat_at_the_next_turn(tmp_path: Path, kernel: bool):
    async def nap() -> str:
        """Rest a while."""
        await asyncio.sleep(1.0)
        return "rested"

    bench = OneTask(lambda: [Tool.from_function(nap)])
    backend = ScriptedBackend(tool_call("nap", {}))

    # ag_run checks the script: the tool in flight ended, and no turn followed it.
    record, meta = await ag_run(tmp_path, backend, kernel=kernel, bench=bench, task_timeout=0.3)

    assert record["error"] == "agent timed out after 0.3 s" and record["answer"] is None
    assert meta["status"] == "finished"
