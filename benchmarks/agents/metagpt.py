"""MetaGPT's own ReAct agent on a benchmark episode: a ``Role`` thinking with its LLM, acting by ``Action``s.

The agent is a MetaGPT ``Role`` in ``RoleReactMode.REACT`` whose ``max_react_loop`` is the step
budget. Each turn of MetaGPT's think-act loop is one step:

- ``_think`` asks the role's own LLM (an ``OpenAILLM`` built from a ``Config`` whose ``LLMConfig``
  points at the run's endpoint) for the next action. The episode's tools are offered as OpenAI
  tools with a forced call (``tool_choice="required"``; ``finish`` by name on the last step when
  ``answer_on_last_step``), so even a tiny model produces a well-formed action. The request goes
  through MetaGPT's function-calling primitive ``_achat_completion_function`` (what its own
  ``aask_code`` uses; ``aask_code`` itself keeps only the arguments, not the tool's name). A model
  that answers in text instead may write the action as ``{"tool": ..., "arguments": {...}}``.
  The role's state is then set to the chosen tool's action;
- ``_act`` runs that ``Action``: one per episode tool, named after it, whose ``run`` is the
  harness's ``tool_runner`` (with the kernel the adapter makes each run one tool syscall). A model
  mistake (no action, an unknown tool, arguments that break the schema) runs nothing and becomes
  the step's observation.

The conversation is the role's memory: the task, then per step the action as the assistant wrote
it and the observation as the user's reply. The loop stops at the budget, when ``finish`` was
accepted, or when the environment ends the episode.

MetaGPT's ``Role.run`` turns every exception into a plain ``Exception`` carrying a traceback, so
the role keeps a harness or backend failure (an ``AIOSError``; without the kernel the relay's
HTTP error, mapped back to one) and ``run`` re-raises it as such.
"""

from __future__ import annotations

import functools
import importlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from aios.errors import AIOSError, InvalidRequestError
from aios.managers.tools import Tool

from ..core import JSON, AgentOutput
from ..framework_support import Endpoint, client_error, endpoint, episode_tools, tool_runner
from ..frameworks import AgentSpec

#: What the role is told about the loop, after MetaGPT's own role prefix.
REACT_RULES = (
    "You solve the task step by step. At each step call exactly one tool. "
    "When you know the answer, call finish with it. If you cannot call tools, reply with one JSON "
    'object {"tool": <tool name>, "arguments": {...}}.'
)
#: The prefix of ``ToolResult.content()`` for a failed tool run (a rejected ``finish`` included).
TOOL_ERROR_PREFIX = "Error: "
BAD_ARGS = "BadArguments"
NO_ACTION = "NoAction"


def _module(name: str) -> Any:
    # The framework is absent where this module is type-checked; treat its modules as Any.
    return importlib.import_module(name)


@dataclass(slots=True)
class Decision:
    """What the model chose in one step; ``observation`` is set when nothing is to run."""

    thought: str
    action: str
    arguments: dict[str, JSON]
    observation: str | None = None
    error: str | None = None


@dataclass(slots=True)
class LoopState:
    """The episode as the role sees it, and what it did (framework-free, kept on the role)."""

    tools: dict[str, Tool]
    finish: str
    budget: int
    system: str
    answer_on_last_step: bool
    steps: list[dict[str, JSON]] = field(default_factory=list)
    answer: str | None = None
    #: The last answer handed to ``finish`` that the environment rejected.
    proposed: str | None = None
    last_text: str | None = None
    finished: bool = False
    pending: Decision | None = None
    failure: AIOSError | None = None

    def tool_choice(self) -> str | dict[str, Any]:
        """Force some tool call; force ``finish`` on the last step when the settings ask for it."""
        if self.answer_on_last_step and len(self.steps) == self.budget - 1:
            return {"type": "function", "function": {"name": self.finish}}
        return "required"

    def record(self, decision: Decision, observation: str) -> None:
        """Keep the step; an accepted ``finish`` gives the answer and ends the loop."""
        error = decision.error
        if decision.observation is None and observation.startswith(TOOL_ERROR_PREFIX):
            error = "ToolError"
        self.steps.append(
            {
                "index": len(self.steps),
                "thought": decision.thought,
                "action": decision.action,
                "arguments": decision.arguments,
                "observation": observation,
                "error": error,
            }
        )
        if decision.error == NO_ACTION and decision.thought:
            # The model answered in words instead of acting: its answer if it never calls finish.
            self.last_text = decision.thought
        if decision.action == self.finish and decision.observation is None:
            answer = str(decision.arguments.get("answer", observation))
            if error is None:
                self.answer, self.finished = answer, True
            else:
                self.proposed = answer

    def fail(self, exc: BaseException) -> AIOSError | None:
        """Keep the harness error ``exc`` stands for (MetaGPT's ``Role.run`` would mask it)."""
        self.failure = client_error(exc)
        return self.failure

    def output(self) -> AgentOutput:
        """The answer (accepted, else last proposed, else the last one said in words) and the steps."""
        answer = self.answer if self.answer is not None else self.proposed or self.last_text
        return AgentOutput(answer=answer, steps=list(self.steps))


def json_action(content: str) -> tuple[str, Any] | None:
    """The first ``{"tool": ..., "arguments": ...}`` (or ``"name"``) object written in ``content``."""
    decoder = json.JSONDecoder()
    start = content.find("{")
    while start >= 0:
        try:
            value, _ = decoder.raw_decode(content, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            name = value.get("tool", value.get("name"))
            if isinstance(name, str):
                return name, value.get("arguments", {})
        start = content.find("{", start + 1)
    return None


def decide(tools: dict[str, Tool], content: str | None, calls: list[tuple[str, str]]) -> Decision:
    """The step's decision from the model's text and tool calls (``(name, arguments JSON)``)."""
    thought = (content or "").strip()
    raw: Any
    if calls:
        name, text = calls[0]
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            return Decision(thought, name, {}, f"the arguments of {name!r} are not JSON: {exc}", BAD_ARGS)
    else:
        found = json_action(thought)
        if found is None:
            return Decision(thought, "", {}, "no tool was called; call one of the tools", NO_ACTION)
        name, raw = found
    if not isinstance(raw, dict):
        return Decision(thought, name, {}, f"the arguments of {name!r} must be a JSON object", BAD_ARGS)
    tool = tools.get(name)
    if tool is None:
        known = ", ".join(repr(n) for n in tools)
        return Decision(thought, name, raw, f"unknown tool {name!r}; use one of {known}", "UnknownTool")
    try:
        tool.validate(raw)  # the model's arguments, checked before anything runs
    except InvalidRequestError as exc:
        return Decision(thought, name, raw, exc.message, BAD_ARGS)
    return Decision(thought, name, raw)


def llm_config(spec: AgentSpec, ep: Endpoint) -> dict[str, Any]:
    """MetaGPT's ``llm`` settings for this agent: the endpoint, the model and the call budget."""
    return {
        "api_type": "openai",
        "base_url": ep.base_url,
        "api_key": ep.api_key,
        "model": ep.model,
        "max_token": spec.settings.action_tokens,
        "temperature": spec.settings.temperature,
        "stream": False,
        # MetaGPT's price table knows no local model; the harness counts tokens itself.
        "calc_usage": False,
    }


def _load_metagpt() -> None:
    # Importing MetaGPT reads its config and fixes its project root: give it a private one first.
    from aios.adapters.metagpt.env import prepare_metagpt_env

    prepare_metagpt_env()
    with warnings.catch_warnings():
        # Google client libraries it imports warn about Python versions.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in ("metagpt.roles.role", "metagpt.actions", "metagpt.config2", "metagpt.context"):
            _module(name)


@functools.cache
def _solver_class() -> Any:
    """The ReAct ``Role`` and its per-tool ``Action``s (MetaGPT classes, defined once, lazily)."""
    action_base: Any = _module("metagpt.actions").Action
    role_module = _module("metagpt.roles.role")
    role_base: Any = role_module.Role
    message_cls = _module("metagpt.schema").Message

    class EpisodeTool(action_base):  # type: ignore[misc]
        """Runs one episode tool; ``run(arguments)`` returns the observation text."""

        runner: Any = None

        async def run(self, arguments: dict[str, Any]) -> str:
            observation: str = await self.runner(arguments)
            return observation

    class ReActSolver(role_base):  # type: ignore[misc]
        """A role that picks a tool by a forced tool call each turn and runs it as an action."""

        name: str = "Solver"
        profile: str = "ReAct agent"
        goal: str = "solve the user's task with the tools and give the answer with finish"
        loop: Any = None
        runners: Any = None
        episode_done: Any = None

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.set_actions(
                [
                    tool_action_class(t.name)(name=t.name, desc=t.description, runner=self.runners[t.name])
                    for t in self.loop.tools.values()
                ]
            )
            self._set_react_mode(
                react_mode=role_module.RoleReactMode.REACT.value, max_react_loop=self.loop.budget
            )

        async def _think(self) -> bool:
            st: LoopState = self.loop
            if st.finished or self.done():
                return False
            system = f"{self._get_prefix()}{REACT_RULES}\n{st.system}".rstrip()
            messages = [{"role": "system", "content": system}, *(m.to_dict() for m in self.rc.memory.get())]
            specs = [t.spec() for t in st.tools.values()]
            try:
                rsp = await self.llm._achat_completion_function(
                    messages, tools=specs, tool_choice=st.tool_choice()
                )
            except Exception as exc:
                failure = st.fail(exc)
                if failure is None or failure is exc:
                    raise
                raise failure from exc
            message = rsp.choices[0].message
            calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
            decision = decide(st.tools, message.content, calls)
            st.pending = decision
            if decision.observation is None:
                self._set_state(list(st.tools).index(decision.action))
            else:
                self._set_state(-1)
            action = json.dumps({"tool": decision.action, "arguments": decision.arguments})
            said = f"{decision.thought}\nAction: {action}" if decision.thought else f"Action: {action}"
            self.rc.memory.add(message_cls(content=said, role="assistant", sent_from=self.name))
            return True

        async def _act(self) -> Any:
            st: LoopState = self.loop
            decision = st.pending
            assert decision is not None, "_act runs after _think"
            observation = decision.observation
            if observation is None:
                try:
                    observation = await self.rc.todo.run(decision.arguments)
                except Exception as exc:
                    st.fail(exc)
                    raise
            st.record(decision, observation)
            msg = message_cls(content=f"Observation: {observation}", role="user", sent_from=self.name)
            self.rc.memory.add(msg)
            return msg

        def done(self) -> bool:
            """Whether the environment ended the episode."""
            return bool(self.episode_done())

    @functools.cache
    def tool_action_class(name: str) -> Any:
        # Named after the tool: with the kernel, each run is a tool syscall named by the class.
        return type(name, (EpisodeTool,), {"__module__": __name__, "__qualname__": name})

    return ReActSolver


def _state(spec: AgentSpec, tools: list[Tool]) -> LoopState:
    ep, s = spec.episode, spec.settings
    return LoopState(
        tools={t.name: t for t in tools},
        finish=tools[-1].name,
        budget=min(s.max_steps, ep.max_steps),
        system=ep.system or "",
        answer_on_last_step=s.answer_on_last_step,
    )


async def run(spec: AgentSpec) -> AgentOutput:
    """Run MetaGPT's ReAct role on ``spec.episode`` through the kernel or the direct relay."""
    _load_metagpt()
    solver_cls = _solver_class()
    config_cls = _module("metagpt.config2").Config
    context_cls = _module("metagpt.context").Context
    tools = episode_tools(spec)
    state = _state(spec, tools)
    async with endpoint(spec, "metagpt") as ep:
        config = config_cls.from_llm_config(llm_config(spec, ep))
        role = solver_cls(
            context=context_cls(config=config),
            loop=state,
            runners={t.name: tool_runner(spec, t) for t in tools},
            episode_done=spec.episode.done,
        )
        if not ep.kernel:
            # One model turn is one request: the harness, not the client, decides about retries.
            role.llm.aclient = role.llm.aclient.with_options(max_retries=0)
        try:
            await role.run(spec.episode.prompt)
        except Exception:
            if state.failure is not None:
                raise state.failure from None
            raise
        finally:
            await role.llm.aclient.close()
    return state.output()
