"""MetaGPT's ReAct role as the ``metagpt`` benchmark agent: scripted in both modes, then the real model."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("metagpt", reason="the metagpt adapter tests run in the metagpt environment")

from aios.adapters.metagpt import actions
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.managers.tools import Tool
from tests.adapters.bench_support import (
    FORCE_FINISH,
    MODEL_ACTIONS,
    SIX_TIMES_SEVEN,
    OneTask,
    Ran,
    accounting,
    backend_failure,
    bench_run,
    model_runs,
    on_the_model,
    tool_names,
)

# MetaGPT gets its private project root before the agent imports it.
from tests.adapters.metagpt.support import ROOT  # noqa: F401

pytestmark = pytest.mark.timeout(120)


class WrongAnswerError(Exception):
    """The environment rejected a proposed answer."""


def checking_finish(answer: str) -> str:
    """Propose the final answer; a wrong one is rejected.

    Args:
        answer: The final answer.
    """
    if answer.strip() != "42":
        raise WrongAnswerError("that is not it")
    return "accepted"


async def mg_run(tmp_path: Path, backend: ScriptedBackend, *, kernel: bool, **options: Any) -> Ran:
    """The metagpt agent on the one task (6*7 with ``add``, or ``bench``), 24 action tokens unless told."""
    options = {"action_tokens": 24, **options}
    return await bench_run(tmp_path, "metagpt", backend=backend, kernel=kernel, **options)


def counts(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (accounting(record), record["answer"], record["steps"])


TOOL_THEN_FINISH = (
    tool_call("add", {"a": 40, "b": 2}, said="I add."),
    tool_call("finish", {"answer": "42"}, call_id="call_2"),
)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "direct"])
async def test_a_tool_call_then_finish_answers_42_with_the_tools_real_observation(
    tmp_path: Path, kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    syscalls: list[str] = []
    run_as_tool = actions.run_as_tool

    async def spy(name: str, body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        syscalls.append(name)
        return await run_as_tool(name, body)

    monkeypatch.setattr(actions, "run_as_tool", spy)
    backend = ScriptedBackend(*TOOL_THEN_FINISH)
    record, meta = await mg_run(tmp_path, backend, kernel=kernel)
    assert (record["status"], record["error"], record["success"]) == ("done", None, True)
    assert record["answer"] == "42"
    assert record["steps"] == [
        {"index": 0, "thought": "I add.", "action": "add", "arguments": {"a": 40, "b": 2},
         "observation": "42", "error": None},
        {"index": 1, "thought": "", "action": "finish", "arguments": {"answer": "42"},
         "observation": "42", "error": None},
    ]  # fmt: skip
    assert (record["llm_calls"], record["tool_calls"]) == (2, 2)
    first, second = backend.requests
    assert tool_names(first) == ["add", "finish"]
    assert (first.tool_choice, first.max_tokens, first.temperature) == ("required", 24, 0.0)
    assert first.messages[0]["role"] == "system" and "call finish" in first.messages[0]["content"]
    assert first.messages[1:] == [{"role": "user", "content": SIX_TIMES_SEVEN}]
    # The role's memory is the conversation: the action it took, then what the tool returned.
    assert second.messages[-2]["role"] == "assistant" and '"tool": "add"' in second.messages[-2]["content"]
    assert second.messages[-1] == {"role": "user", "content": "Observation: 42"}
    # With the kernel each tool's action ran as a tool syscall named after the tool.
    assert syscalls == (["add", "finish"] if kernel else [])
    if kernel:
        # The run's kernel summary counts the agent's syscalls: two LLM calls and two tool runs.
        assert meta["kernel_stats"]["latency"]["count"] == 4


async def test_the_record_accounts_the_same_calls_and_tokens_with_and_without_the_kernel(
    tmp_path: Path,
) -> None:
    with_kernel, _ = await mg_run(tmp_path, ScriptedBackend(*TOOL_THEN_FINISH), kernel=True)
    without, _ = await mg_run(tmp_path, ScriptedBackend(*TOOL_THEN_FINISH), kernel=False)
    assert counts(with_kernel) == counts(without)
    assert with_kernel["completion_tokens"] == 14 and with_kernel["prompt_tokens"] == 26


MISTAKES = (
    tool_call("multiply", {"a": 6, "b": 7}),
    tool_call("add", {"a": "six"}),
    tool_call("add", "{not json"),
    text("I think it is forty-two."),
    text('Let me add. {"tool": "add", "arguments": {"a": 6, "b": 36}}'),
    tool_call("finish", {"answer": "42"}),
)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "direct"])
async def test_model_mistakes_become_observations_and_only_valid_actions_run(
    tmp_path: Path, kernel: bool
) -> None:
    backend = ScriptedBackend(*MISTAKES)
    record, _ = await mg_run(tmp_path, backend, kernel=kernel, max_steps=6)
    steps = record["steps"]
    assert [(s["action"], s["error"]) for s in steps] == [
        ("multiply", "UnknownTool"),
        ("add", "BadArguments"),
        ("add", "BadArguments"),
        ("", "NoAction"),
        ("add", None),
        ("finish", None),
    ]
    assert "unknown tool 'multiply'" in steps[0]["observation"] and "'add'" in steps[0]["observation"]
    assert "a" in steps[1]["observation"] and "not JSON" in steps[2]["observation"]
    assert steps[4]["observation"] == "42" and steps[4]["arguments"] == {"a": 6, "b": 36}
    assert (record["status"], record["answer"]) == ("done", "42")
    assert (record["tool_calls"], record["llm_calls"]) == (2, 6)


async def test_the_step_budget_bounds_the_model_turns_and_the_last_one_forces_finish(tmp_path: Path) -> None:
    backend = ScriptedBackend(text("It is 42."), *(tool_call("add", {"a": 1, "b": i}) for i in range(2)))
    # mg_run checks the script: no fourth call was made.
    record, _ = await mg_run(tmp_path / "free", backend, kernel=False, max_steps=3, answer_on_last_step=False)
    assert [s["action"] for s in record["steps"]] == ["", "add", "add"]
    # finish was never called: the answer is what the model last said in words.
    assert record["answer"] == "It is 42." and record["success"] is False
    assert all(r.tool_choice == "required" for r in backend.requests)
    # The episode's own budget is lower: it wins, and its last step must be finish.
    backend = ScriptedBackend(tool_call("add", {"a": 1, "b": 1}), tool_call("finish", {"answer": "2"}))
    record, _ = await mg_run(tmp_path / "forced", backend, kernel=False, bench=OneTask(max_steps=2))
    assert [r.tool_choice for r in backend.requests] == ["required", FORCE_FINISH]
    assert record["answer"] == "2"


async def test_a_rejected_finish_goes_on_and_an_ended_episode_stops_the_loop(tmp_path: Path) -> None:
    finish = Tool.from_function(checking_finish, name="finish")
    backend = ScriptedBackend(tool_call("finish", {"answer": "41"}), tool_call("finish", {"answer": "42"}))
    record, _ = await mg_run(tmp_path / "finish", backend, kernel=True, bench=OneTask(finish=finish))
    rejected = "Error: WrongAnswerError: that is not it"
    assert [s["observation"] for s in record["steps"]] == [rejected, "accepted"]
    assert [s["error"] for s in record["steps"]] == ["ToolError", None] and record["answer"] == "42"
    ended = OneTask(is_done=lambda: True)
    # mg_run checks the (empty) script: the environment had ended the episode, no model turn at all.
    record, _ = await mg_run(tmp_path / "ended", ScriptedBackend(), kernel=False, bench=ended)
    assert record["steps"] == [] and record["llm_calls"] == 0 and record["answer"] is None


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "direct"])
async def test_a_backend_failure_is_a_harness_error_not_a_failed_agent(tmp_path: Path, kernel: bool) -> None:
    backend = ScriptedBackend(backend_failure("the backend fell over"))
    record, _ = await mg_run(tmp_path, backend, kernel=kernel)
    assert record["status"] == "error"
    assert record["error"].startswith("BackendError:") and "fell over" in record["error"]


@on_the_model
async def test_the_agent_runs_on_the_embedded_model_with_and_without_the_kernel(tmp_path: Path) -> None:
    for ran in await model_runs(tmp_path, "metagpt", task_timeout=120):
        assert all(s["action"] in MODEL_ACTIONS or s["error"] for s in ran.record["steps"])
