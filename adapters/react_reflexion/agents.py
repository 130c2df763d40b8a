"""The paper's two native agents, written on the SDK: ReAct and Reflexion.

ReAct (Yao et al. 2023) alternates Thought → Action → Observation. Each step here is two LLM
syscalls: a short free-text thought, then an action chosen as a *forced tool call* (``tool_choice
="required"``) among the agent's tools plus ``finish(answer)``. Forcing the call means even a tiny
model produces a well-formed action every step (the embedded backend constrains it with a
grammar); a model's mistake — bad arguments, a failing tool — becomes the observation of the
step and is fed back, never raised. Tools run as kernel tool syscalls (validated, limited, with
a timeout).

Reflexion (Shinn et al. 2023) wraps ReAct in trials: after a failed trial (judged by the
caller's evaluator) the model writes a one-sentence reflection, which is kept in the agent's
kernel memory and given to the next trial.

Every LLM call, tool call and memory write goes through one ``AgentRuntime``: by default
``KernelRuntime`` (the kernel SDK: syscalls under the agent's name). A benchmark hands in another
runtime (one that calls the backend directly) to measure the same agent without the kernel, so
"with vs without" differs in that one object only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aios import sdk
from aios.errors import InvalidRequestError
from aios.managers.tools import Tool, ToolResult
from aios.types import LLMResult, Message

if TYPE_CHECKING:
    from aios.kernel import Kernel

REACT_SYSTEM = (
    "You solve tasks step by step. At each step, think briefly, then call exactly one tool. "
    "When you know the answer, call finish with it."
)


@dataclass(slots=True)
class Step:
    """One ReAct step: the thought, the action taken, and what came back."""

    index: int
    thought: str
    action: str
    arguments: dict[str, Any]
    observation: str
    error: str | None = None


@dataclass(slots=True)
class Trajectory:
    """A whole ReAct run: the task, its steps and the final answer (None if it ran out of steps)."""

    task: str
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the agent called ``finish``."""
        return self.answer is not None


def _finish(answer: str) -> str:
    """Give the final answer to the task.

    Args:
        answer: The final answer.
    """
    return answer


FINISH = Tool.from_function(_finish, name="finish")


def _as_tool(t: Tool | Callable[..., Any]) -> Tool:
    return t if isinstance(t, Tool) else Tool.from_function(t)


class AgentRuntime(Protocol):
    """Where an agent's LLM calls, tool calls and memories go (the kernel, or a backend directly)."""

    async def llm_chat(self, messages: list[Message], *, agent: str, **params: Any) -> LLMResult:
        """One chat completion for ``agent`` (``params`` as in ``aios.sdk.llm_chat``)."""
        ...

    async def run_tool(self, tool: Tool, arguments: dict[str, Any], *, agent: str) -> ToolResult:
        """Run ``tool`` on arguments already validated against its schema."""
        ...

    async def remember(self, text: str, *, agent: str, metadata: dict[str, Any]) -> None:
        """Keep ``text`` in the agent's memory."""
        ...


class KernelRuntime:
    """The default runtime: every call is a kernel syscall under the agent's name (via the SDK)."""

    def __init__(self, kernel: Kernel | None = None):
        self.kernel = kernel

    async def llm_chat(self, messages: list[Message], *, agent: str, **params: Any) -> LLMResult:
        """An LLM syscall."""
        return await sdk.llm_chat(messages, agent=agent, kernel=self.kernel, **params)

    async def run_tool(self, tool: Tool, arguments: dict[str, Any], *, agent: str) -> ToolResult:
        """A tool syscall (recorded, limited, with a deadline) running ``tool.call``."""
        result: ToolResult = await sdk.tool_syscall(
            tool.name, tool.call, arguments, agent=agent, kernel=self.kernel
        )
        return result

    async def remember(self, text: str, *, agent: str, metadata: dict[str, Any]) -> None:
        """A memory syscall."""
        await sdk.syscall("memory", "add", agent=agent, kernel=self.kernel, text=text, metadata=metadata)


class ReActAgent:
    """A ReAct agent whose LLM and tool calls are kernel syscalls under its own name.

    ``runtime`` replaces the kernel (see ``AgentRuntime``). ``finish`` replaces the answer tool
    (it must take ``answer``): an environment that checks answers makes it fail on a wrong one,
    and the failure is the step's observation, so the loop goes on. ``done`` lets an environment
    end the episode (a turn budget spent) after any step. With ``answer_on_last_step`` the last
    step's action is forced to be ``finish``, so a run that uses up its steps still answers.
    """

    def __init__(
        self,
        name: str,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        *,
        model: str | None = None,
        max_steps: int = 6,
        thought_tokens: int = 48,
        action_tokens: int = 128,
        system: str = REACT_SYSTEM,
        temperature: float = 0.0,
        runtime: AgentRuntime | None = None,
        finish: Tool | None = None,
        done: Callable[[], bool] | None = None,
        answer_on_last_step: bool = False,
    ):
        self.name = name
        self.tools = {t.name: t for t in map(_as_tool, tools)}
        if "finish" in self.tools:
            raise ValueError("'finish' is reserved for the final answer")
        if finish is not None and "answer" not in finish.parameters.get("properties", {}):
            raise ValueError("a custom finish tool must take an 'answer' argument")
        self.tools["finish"] = FINISH if finish is None else finish
        self.model = model
        self.max_steps = max_steps
        self.thought_tokens = thought_tokens
        self.action_tokens = action_tokens
        self.system = system
        self.temperature = temperature
        self.runtime: AgentRuntime = runtime if runtime is not None else KernelRuntime()
        self.done = done
        self.answer_on_last_step = answer_on_last_step

    def _specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    async def steps(self, task: str, *, context: Sequence[str] = ()) -> AsyncIterator[Step]:
        """Run the loop, yielding each step as it completes (the caller may stop early)."""
        system = self.system + "".join(f"\n{c}" for c in context)
        messages: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": task}]
        chat = self.runtime.llm_chat
        with sdk.agent(self.name):
            for i in range(self.max_steps):
                thought = await chat(
                    [*messages, {"role": "user", "content": "Thought (one sentence):"}],
                    agent=self.name,
                    model=self.model,
                    max_tokens=self.thought_tokens,
                    stop=["\n\n"],
                    temperature=self.temperature,
                )
                messages.append({"role": "assistant", "content": thought.text.strip() or "(thinking)"})
                last = self.answer_on_last_step and i == self.max_steps - 1
                action = await chat(
                    messages,
                    agent=self.name,
                    model=self.model,
                    tools=self._specs(),
                    tool_choice={"type": "function", "function": {"name": "finish"}} if last else "required",
                    max_tokens=self.action_tokens,
                    temperature=self.temperature,
                )
                step = await self._act(i, thought.text.strip(), action.tool_calls, messages)
                yield step
                if step.action == "finish" and step.error is None:
                    return
                if self.done is not None and self.done():
                    return

    async def _act(self, i: int, thought: str, calls: Sequence[Any], messages: list[Message]) -> Step:
        if not calls:
            # The backend could not force a call (e.g. an HTTP server without tool support).
            messages.append({"role": "user", "content": "Observation: no tool was called. Call a tool."})
            return Step(i, thought, "", {}, "no tool was called", error="NoAction")
        call = calls[0]
        messages.append({"role": "assistant", "content": None, "tool_calls": [call.to_openai()]})
        tool = self.tools.get(call.name)
        error = None
        args: dict[str, Any] = {}
        if tool is None:
            observation, error = f"unknown tool {call.name!r}; use one of {sorted(self.tools)}", "UnknownTool"
        else:
            try:
                args = call.parsed_arguments()
                tool.validate(args)  # the model's arguments, checked before anything runs
            except InvalidRequestError as exc:
                observation, error = exc.message, "BadArguments"
            else:
                result = await self.runtime.run_tool(tool, args, agent=self.name)
                observation = result.content()
                error = None if result.ok else (result.error.type if result.error else "ToolError")
        messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
        return Step(i, thought, call.name, args, observation, error)

    async def run(self, task: str, *, context: Sequence[str] = ()) -> Trajectory:
        """Run to ``finish`` or ``max_steps``; the answer is the argument of ``finish``."""
        traj = Trajectory(task)
        async for step in self.steps(task, context=context):
            traj.steps.append(step)
            if step.action == "finish" and step.error is None:
                traj.answer = str(step.arguments.get("answer", step.observation))
        return traj


Evaluator = Callable[[Trajectory], Awaitable[tuple[bool, str]] | tuple[bool, str]]


@dataclass(slots=True)
class ReflexionResult:
    """All trials of a Reflexion run and the reflections written between them."""

    trials: list[Trajectory]
    reflections: list[str]
    success: bool

    @property
    def answer(self) -> str | None:
        """The last trial's answer."""
        return self.trials[-1].answer if self.trials else None


class ReflexionAgent:
    """ReAct in trials; failed trials leave a reflection in the agent's kernel memory."""

    def __init__(
        self, react: ReActAgent, evaluate: Evaluator, *, max_trials: int = 3, reflect_tokens: int = 64
    ):
        self.react = react
        self.evaluate = evaluate
        self.max_trials = max_trials
        self.reflect_tokens = reflect_tokens

    async def run(self, task: str) -> ReflexionResult:
        """Up to ``max_trials`` ReAct trials, each seeing the reflections of the failed ones."""
        trials: list[Trajectory] = []
        reflections: list[str] = []
        name = self.react.name
        for trial in range(self.max_trials):
            context = [f"Lesson from an earlier attempt: {r}" for r in reflections]
            traj = await self.react.run(task, context=context)
            trials.append(traj)
            verdict = self.evaluate(traj)
            ok, feedback = verdict if isinstance(verdict, tuple) else await verdict
            if ok:
                return ReflexionResult(trials, reflections, True)
            if trial == self.max_trials - 1 or (self.react.done is not None and self.react.done()):
                break  # no trial is left to learn from a reflection
            reflection = await self._reflect(traj, feedback)
            reflections.append(reflection)
            await self.react.runtime.remember(
                reflection, agent=name, metadata={"task": task, "kind": "reflection"}
            )
        return ReflexionResult(trials, reflections, False)

    async def _reflect(self, traj: Trajectory, feedback: str) -> str:
        summary = "\n".join(
            f"{s.action}({json.dumps(s.arguments)}) -> {s.observation[:200]}" for s in traj.steps
        )
        prompt = (
            f"Task: {traj.task}\nYour attempt:\n{summary}\nAnswer: {traj.answer}\n"
            f"Feedback: {feedback}\nIn one sentence, what went wrong and what will you do differently?"
        )
        with sdk.agent(self.react.name):
            r = await self.react.runtime.llm_chat(
                [{"role": "user", "content": prompt}],
                agent=self.react.name,
                model=self.react.model,
                max_tokens=self.reflect_tokens,
            )
        return r.text.strip() or feedback
