"""ReAct and Reflexion: exact loop shapes with a scripted model, and a real run on the embedded one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aios.adapters.react_reflexion import ReActAgent, ReflexionAgent, Trajectory
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.config import KernelConfig
from aios.kernel import Kernel


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


def kernel_with(backend: Any, tmp_path: Path) -> Kernel:
    cfg = KernelConfig(backends=[], data_dir=str(tmp_path))
    return Kernel(cfg, backends={"m": backend}, entry_points=False)


async def test_react_thinks_acts_observes_and_finishes(tmp_path: Path):
    backend = ScriptedBackend(
        text("I should multiply."),
        tool_call("multiply", {"a": 6, "b": 7}),
        text("Now I know."),
        tool_call("finish", {"answer": "42"}),
    )
    async with kernel_with(backend, tmp_path) as k:
        traj = await ReActAgent("mathy", [multiply]).run("What is 6 times 7?")
        stats = k.stats()
    backend.check()
    assert traj.answer == "42" and [s.action for s in traj.steps] == ["multiply", "finish"]
    assert traj.steps[0].observation == "42" and traj.steps[0].thought == "I should multiply."
    action_request = backend.requests[1]
    assert action_request.tool_choice == "required"
    assert {t["function"]["name"] for t in action_request.tools or []} == {"multiply", "finish"}
    # The observation went back to the model as a tool message answering the call.
    assert backend.requests[2].messages[-2]["role"] == "tool"
    assert stats["agents"]["mathy"]["by_kind"] == {"llm": 4, "tool": 2}


async def test_model_mistakes_become_observations_not_exceptions(tmp_path: Path):
    backend = ScriptedBackend(
        text("hmm"),
        tool_call("multiply", {"a": "six", "b": 7}),
        text("hmm"),
        tool_call("divide", {"a": 1}),
        text("ok"),
        tool_call("finish", {"answer": "done"}),
    )
    async with kernel_with(backend, tmp_path):
        traj = await ReActAgent("clumsy", [multiply]).run("task")
    backend.check()
    bad_args, unknown, finish = traj.steps
    assert bad_args.error is not None and "a" in bad_args.observation
    assert unknown.error == "UnknownTool" and "multiply" in unknown.observation
    assert finish.action == "finish" and traj.answer == "done"


async def test_reflexion_retries_with_a_reflection_kept_in_memory(tmp_path: Path):
    backend = ScriptedBackend(
        text("guess"),
        tool_call("finish", {"answer": "41"}),
        text("I answered without computing; I will use multiply."),
        text("compute"),
        tool_call("multiply", {"a": 6, "b": 7}),
        text("done"),
        tool_call("finish", {"answer": "42"}),
    )

    def evaluate(t: Trajectory) -> tuple[bool, str]:
        return (t.answer == "42", "the answer is wrong")

    async with kernel_with(backend, tmp_path) as k:
        result = await ReflexionAgent(ReActAgent("learner", [multiply]), evaluate).run("6*7?")
        memories = await k.syscall("learner", "memory", "search", query="multiply")
    backend.check()
    assert result.success and len(result.trials) == 2 and result.answer == "42"
    assert result.reflections == ["I answered without computing; I will use multiply."]
    # The second trial saw the lesson in its system prompt.
    assert "Lesson from an earlier attempt" in backend.requests[3].messages[0]["content"]
    assert memories and memories[0].entry.metadata["kind"] == "reflection"


@pytest.mark.model
async def test_react_runs_on_the_real_embedded_model(tmp_path: Path):
    cfg = KernelConfig(data_dir=str(tmp_path))
    async with Kernel(cfg, entry_points=False) as k:
        traj = await ReActAgent("real-react", [multiply], max_steps=2, thought_tokens=16).run(
            "What is 6 times 7?"
        )
        stats = k.stats()["agents"]["real-react"]
    assert len(traj.steps) >= 1
    # Every action was a well-formed call of a declared tool (forced, grammar-constrained).
    assert all(s.action in ("multiply", "finish") and s.error is None for s in traj.steps)
    assert stats["by_kind"]["llm"] == 2 * len(traj.steps)
    assert stats["by_kind"].get("tool", 0) == sum(s.action == "multiply" for s in traj.steps)
