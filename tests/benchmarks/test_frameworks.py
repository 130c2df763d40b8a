"""The framework registry: react and reflexion on an episode, and the slots of the other frameworks."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.adapters.base import FrameworkNotInstalledError
from aios.adapters.react_reflexion import KernelRuntime, ReActAgent
from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.benchmarks.core import Episode
from aios.benchmarks.frameworks import (
    FRAMEWORK_NAMES,
    AgentSettings,
    AgentSpec,
    UnknownFrameworkError,
    frameworks,
    get_framework,
)
from aios.benchmarks.runtime import DirectLLM
from aios.config import KernelConfig
from aios.kernel import Kernel
from aios.managers.tools import Tool


def script() -> ScriptedBackend:
    return ScriptedBackend(
        text("guess"),
        tool_call("finish", {"answer": "41"}),
        text("I guessed; next time I will compute 6*7."),
        text("compute"),
        tool_call("finish", {"answer": "42"}),
    )


def episode() -> Episode:
    async def self_check(answer: str | None) -> tuple[bool, str]:
        return (answer == "42", "the examples fail")

    return Episode(prompt="What is 6*7?", self_check=self_check, max_steps=3)


def test_every_named_framework_is_registered_and_unknown_ones_are_refused():
    assert set(frameworks()) == set(FRAMEWORK_NAMES)
    with pytest.raises(UnknownFrameworkError, match="known: autogen, langchain") as err:
        get_framework("crewai")
    assert err.value.field == "framework"


@pytest.mark.parametrize("name", ["langchain", "autogen", "metagpt", "open_interpreter"])
async def test_a_third_party_framework_says_when_it_is_not_available_here(
    name: str, monkeypatch: pytest.MonkeyPatch
):
    backend = script()
    spec = AgentSpec("a", episode(), DirectLLM(backend))
    monkeypatch.setattr("importlib.util.find_spec", lambda module: None)
    with pytest.raises(FrameworkNotInstalledError, match="not available in this environment") as err:
        await get_framework(name).run(spec)
    assert err.value.field == "framework" and "scripts/make-env.sh" in str(err.value)
    with pytest.raises(FrameworkNotInstalledError):
        get_framework(name).preflight()
    assert backend.requests == []  # nothing was asked of the model


async def test_reflexion_retries_on_the_episodes_feedback_without_the_kernel():
    backend = script()
    runtime = DirectLLM(backend)
    out = await get_framework("reflexion").run(
        AgentSpec("r", episode(), runtime, AgentSettings(max_trials=2))
    )
    backend.check()
    assert out.answer == "42" and out.trials == 2
    assert out.reflections == ["I guessed; next time I will compute 6*7."]
    assert [s["trial"] for s in out.steps] == [0, 1]
    assert runtime.memories["r"][0][0] == out.reflections[0]
    assert "the examples fail" in backend.requests[2].messages[0]["content"]


async def test_reflexion_keeps_its_reflection_in_kernel_memory_with_the_kernel(tmp_path: Path):
    backend = script()
    cfg = KernelConfig(backends=[], data_dir=str(tmp_path))
    async with Kernel(cfg, backends={"m": backend}, entry_points=False) as k:
        out = await get_framework("reflexion").run(AgentSpec("r", episode(), KernelRuntime(k), kernel=k))
        found = await k.syscall("r", "memory", "search", query="compute")
        by_kind = k.stats()["agents"]["r"]["by_kind"]
    assert out.answer == "42" and found and found[0].entry.metadata["kind"] == "reflection"
    assert by_kind["llm"] == 5 and by_kind["memory"] >= 1


async def test_react_stops_when_the_environment_ends_the_episode():
    backend = ScriptedBackend(text("a"), tool_call("noop", {}))
    done = [False]

    def noop() -> str:
        """Do nothing."""
        done[0] = True
        return "ok"

    ep = Episode(prompt="p", tools=[Tool.from_function(noop)], is_done=lambda: done[0], max_steps=5)
    out = await get_framework("react").run(AgentSpec("r", ep, DirectLLM(backend)))
    backend.check()
    assert [s["action"] for s in out.steps] == ["noop"] and out.answer is None


def test_a_custom_finish_tool_must_take_an_answer():
    def finish(text: str) -> str:
        """Finish.

        Args:
            text: Something.
        """
        return text

    with pytest.raises(ValueError, match="'answer'"):
        ReActAgent("a", finish=Tool.from_function(finish))


async def test_the_last_step_is_forced_to_answer():
    backend = ScriptedBackend(
        text("a"), tool_call("noop", {}), text("b"), tool_call("finish", {"answer": "x"})
    )

    def noop() -> str:
        """Do nothing."""
        return "ok"

    ep = Episode(prompt="p", tools=[Tool.from_function(noop)], max_steps=2)
    out = await get_framework("react").run(AgentSpec("r", ep, DirectLLM(backend)))
    backend.check()
    assert out.answer == "x"
    assert backend.requests[1].tool_choice == "required"
    assert backend.requests[3].tool_choice == {"type": "function", "function": {"name": "finish"}}
