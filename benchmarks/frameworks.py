"""The framework registry: a framework is an agent factory the harness can run on an ``Episode``.

``get_framework(name)`` returns a ``Framework``: ``await fw.run(spec)`` takes an ``AgentSpec``
(the agent's name, the episode — prompt, tools, answer checks — and the runtime that decides
whether calls go through the kernel) and returns an ``AgentOutput`` (answer and trajectory).

``react`` and ``reflexion`` are the native agents of ``aios.adapters.react_reflexion``, run
through ``spec.runtime``. ``langchain``, ``autogen``, ``metagpt`` and ``open_interpreter`` build
that framework's own agent (``aios.benchmarks.agents.<name>``) and route it with
``framework_support.endpoint``: through ``aios.patched(name)`` with the kernel, to a loopback
relay over the backend without it. Where the framework cannot be imported (each lives in its own
environment, see envs/), ``preflight`` raises ``FrameworkNotInstalledError`` saying so.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from aios.adapters.base import FrameworkNotInstalledError
from aios.adapters.react_reflexion import AgentRuntime, ReActAgent, ReflexionAgent, Trajectory
from aios.adapters.react_reflexion.agents import REACT_SYSTEM
from aios.errors import ConfigError

from .core import JSON, AgentOutput, Episode

if TYPE_CHECKING:
    from aios.kernel import Kernel

FRAMEWORK_NAMES = ("react", "reflexion", "langchain", "autogen", "metagpt", "open_interpreter")


class UnknownFrameworkError(ConfigError):
    """No framework of that name is registered."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Knobs of the agent loop."""

    max_steps: int = 6
    thought_tokens: int = 48
    action_tokens: int = 256
    temperature: float = 0.0
    #: Reflexion's trials.
    max_trials: int = 2
    #: Force ``finish`` on the last step, so an agent that used up its steps still answers.
    answer_on_last_step: bool = True


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """Everything a framework gets to run one agent on one episode."""

    name: str
    episode: Episode
    #: The only difference between "with" and "without" the kernel.
    runtime: AgentRuntime
    settings: AgentSettings = AgentSettings()
    #: The running kernel (None without one), for adapters that patch a framework onto it.
    kernel: Kernel | None = None
    #: The backend's OpenAI-compatible URL and model when there is one (frameworks without kernel).
    backend_url: str | None = None
    backend_model: str | None = None


def _ready() -> None:
    """Nothing to check."""


@dataclass(frozen=True, slots=True)
class Framework:
    """A named agent factory; ``preflight`` raises before a run if the framework cannot run here."""

    name: str
    run: Callable[[AgentSpec], Awaitable[AgentOutput]]
    description: str = ""
    preflight: Callable[[], None] = _ready


def _react_agent(spec: AgentSpec) -> ReActAgent:
    ep, s = spec.episode, spec.settings
    system = REACT_SYSTEM if not ep.system else f"{REACT_SYSTEM}\n{ep.system}"
    return ReActAgent(
        spec.name,
        ep.tools,
        max_steps=min(s.max_steps, ep.max_steps),
        thought_tokens=s.thought_tokens,
        action_tokens=s.action_tokens,
        system=system,
        temperature=s.temperature,
        runtime=spec.runtime,
        finish=ep.finish,
        done=ep.is_done,
        answer_on_last_step=s.answer_on_last_step,
    )


def _steps(traj: Trajectory, trial: int = 0) -> list[dict[str, JSON]]:
    return [{"trial": trial, **asdict(step)} for step in traj.steps]


async def run_react(spec: AgentSpec) -> AgentOutput:
    """ReAct: thought, forced tool call, observation, until ``finish`` or the step budget."""
    traj = await _react_agent(spec).run(spec.episode.prompt)
    return AgentOutput(answer=traj.answer, steps=_steps(traj))


async def run_reflexion(spec: AgentSpec) -> AgentOutput:
    """Reflexion: ReAct trials; between them a reflection on the episode's self-check feedback."""
    ep = spec.episode

    async def evaluate(traj: Trajectory) -> tuple[bool, str]:
        if ep.self_check is None:
            return (traj.answer is not None, "You did not give a final answer with finish.")
        return await ep.self_check(traj.answer)

    agent = ReflexionAgent(_react_agent(spec), evaluate, max_trials=spec.settings.max_trials)
    result = await agent.run(ep.prompt)
    steps = [s for i, t in enumerate(result.trials) for s in _steps(t, i)]
    answer = next((t.answer for t in reversed(result.trials) if t.answer is not None), None)
    return AgentOutput(answer=answer, steps=steps, trials=len(result.trials), reflections=result.reflections)


def _third_party(name: str, module: str, adapter: str) -> Framework:
    """A framework agent from ``aios.benchmarks.agents.<name>``, usable where ``module`` imports."""

    def preflight() -> None:
        if importlib.util.find_spec(module) is None:
            raise FrameworkNotInstalledError(
                f"framework {name!r} is not available in this environment: its package ({module!r}) "
                f"cannot be imported; install it (scripts/make-env.sh {adapter} builds an environment "
                f"with it) to benchmark {name}",
                field="framework",
            )

    async def run(spec: AgentSpec) -> AgentOutput:
        preflight()
        agent_module = importlib.import_module(f"aios.benchmarks.agents.{name}")
        output: AgentOutput = await agent_module.run(spec)
        return output

    return Framework(name, run, f"{name}'s own agent; kernel routing via aios.patch({adapter!r})", preflight)


def frameworks() -> dict[str, Framework]:
    """Every registered framework, by name."""
    return {
        "react": Framework("react", run_react, "native ReAct on the AIOS SDK"),
        "reflexion": Framework("reflexion", run_reflexion, "native Reflexion (ReAct trials + reflections)"),
        "langchain": _third_party("langchain", "langchain_core", "langchain"),
        "autogen": _third_party("autogen", "autogen", "autogen"),
        "metagpt": _third_party("metagpt", "metagpt", "metagpt"),
        "open_interpreter": _third_party("open_interpreter", "interpreter", "open_interpreter"),
    }


def get_framework(name: str) -> Framework:
    """The framework called ``name`` (``UnknownFrameworkError`` naming the known ones otherwise)."""
    found = frameworks()
    if name not in found:
        raise UnknownFrameworkError(
            f"unknown framework {name!r}; known: {', '.join(sorted(found))}", field="framework"
        )
    return found[name]


def describe() -> dict[str, Any]:
    """Name → description of every framework (for ``aios-bench list``)."""
    return {name: fw.description for name, fw in frameworks().items()}
