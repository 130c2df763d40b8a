"""Open Interpreter's own agent on a benchmark episode.

A fresh ``OpenInterpreter`` per agent (never the module singleton): ``auto_run``, ``offline``,
``loop=False``, no telemetry, no conversation files, model ``openai/<model>`` at the endpoint of
``framework_support.endpoint`` in function-calling mode, the run's temperature and ``max_tokens``,
conversation trimmed to ``CONTEXT_WINDOW`` tokens; driven by ``chat(prompt, display=False,
stream=False)`` in a thread of its own.

Tools. Open Interpreter's one action is running code: the model calls ``execute(language, code)``
and ``respond`` hands the code to ``computer.run``. Custom languages are its documented extension
point, so each episode tool is one language, and the terminal offers only those (no shell, no host
Python): a code runner (a tool whose only parameter is ``code``: ``python``, MINT's ``execute``) is
the language ``python`` (its own name an alias) and the code is its ``code``; any other tool,
``finish`` included, is the language of its name and the code is the value of its one (required)
parameter or a JSON object of its arguments. Each language's ``system_message`` documents its tool
(description, JSON-schema parameters, how to call it); the episode's system text goes to
``custom_instructions``. ``computer.run`` runs the language's tool, ``await tool_runner(spec,
tool)(arguments)`` on the run's loop, and shows the observation as the code's output; with the
kernel the call is wrapped in the tool syscall the adapter makes of a terminal execution
(``open_interpreter.<language>``), made here as the terminal is not used. A bad call (unknown
language, arguments that do not fit) gets an error output and runs no tool, in both modes.

Answer and steps. The answer is the argument of a ``finish`` that succeeded, else Open
Interpreter's final message (its last assistant text, whole: benchmarks extract "FINAL ANSWER:"
themselves), else None. A step is a model turn (``thought``: its text; ``action``: the tool run, or
the language asked for). At most ``min(settings.max_steps, episode.max_steps)`` turns: after that,
after a successful ``finish`` or once the episode is done, ``llm.run`` answers nothing and
``respond`` ends as when the model stops writing code. Open Interpreter cannot force a last-step
``finish``: ``answer_on_last_step`` does not apply.

Both modes send the same requests: with the kernel the adapter forces ``execute`` on a fresh user
turn (``AIOS_OPEN_INTERPRETER_TOOL_CHOICE``); without it the same choice is added to one litellm
call (Open Interpreter's default retries up to four times, the kernel's hook does not). Backend
and harness errors are ``AIOSError`` in both modes (the relay's HTTP error is translated back);
any other failure inside Open Interpreter ends the run as a failed task, recorded as a last step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import copy
import dataclasses
import functools
import importlib
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from aios import sdk
from aios.adapters.open_interpreter.adapter import prepare_offline_env
from aios.adapters.open_interpreter.completions import choose_tool, to_kernel_messages, tool_choice_policy
from aios.adapters.open_interpreter.execution import tool_name
from aios.errors import AIOSError, InvalidRequestError
from aios.managers.tools import Tool

from ..core import JSON, AgentOutput
from ..framework_support import (
    BRIDGE_SLACK_S,
    Endpoint,
    client_error,
    endpoint,
    episode_tools,
    run_on_loop,
    tool_runner,
)
from ..frameworks import AgentSpec

T = TypeVar("T")
ADAPTER = "open_interpreter"
#: Tokens Open Interpreter trims its conversation to (the embedded model's context).
CONTEXT_WINDOW = 8192
#: Language names Open Interpreter treats specially (``apt install`` in shell, text as notes).
_RESERVED = frozenset({"shell", "text", "markdown", "plaintext"})
_GUIDE = (
    "You act only by calling execute(language, code): each language is one of the tools described "
    "above. When you know the answer, run the language finish with it."
)


async def run(spec: AgentSpec) -> AgentOutput:
    """Open Interpreter's own agent on ``spec.episode``; see the module docstring."""
    prepare_offline_env()
    trail = Trail(spec, asyncio.get_running_loop())
    async with endpoint(spec, ADAPTER) as ep:
        interp = await in_own_thread(build_interpreter, spec, ep, trail)
        try:
            await in_own_thread(converse, interp, spec.episode.prompt, trail)
        except asyncio.CancelledError:
            trail.cancelled = True  # the thread cannot be interrupted: it stops at its next turn
            raise
    return trail.output()


async def in_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread of its own that inherits the context.

    Not the loop's default executor: a chat holds its thread for minutes, and the kernel runs
    synchronous tools in that executor, so agents there could starve their own tool calls.
    """
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="open-interpreter")
    try:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(ctx.run, fn, *args))
    finally:
        pool.shutdown(wait=False)


def build_interpreter(spec: AgentSpec, ep: Endpoint, trail: Trail) -> Any:
    """A fresh ``OpenInterpreter`` for ``spec``, pointed at ``ep``, acting through the episode's tools."""
    core = importlib.import_module("interpreter.core.core")
    s = spec.settings
    interp = core.OpenInterpreter(
        offline=True,
        auto_run=True,
        loop=False,
        disable_telemetry=True,
        conversation_history=False,
        custom_instructions="\n".join(_unbraced(t) for t in (spec.episode.system, _GUIDE) if t),
    )
    llm = interp.llm
    llm.model = "openai/" + ep.model
    llm.api_base = ep.base_url
    llm.api_key = ep.api_key
    llm.supports_functions = True
    llm.supports_vision = False
    llm.temperature = s.temperature
    llm.max_tokens = s.action_tokens
    llm.context_window = CONTEXT_WINDOW
    # With the kernel, the adapter's hook (read through its patch); without it, litellm once.
    hook = llm.completions if ep.kernel else direct_completions()
    interp.computer.terminal.languages = languages(trail)
    llm.completions = own_schema(hook, [lang.name for lang in interp.computer.terminal.languages])
    llm.run = trail.counted(llm.run)
    # OI runs the model's code with computer.run (respond.py): here it runs the episode's tool.
    interp.computer.run = trail.computer_run
    trail.messages = lambda: interp.messages
    return interp


def converse(interp: Any, prompt: str, trail: Trail) -> None:
    """``interp.chat(prompt)``, with a backend failure raised as an ``AIOSError``."""
    try:
        interp.chat(prompt, display=False, stream=False)
    except AIOSError:
        raise
    except Exception as exc:
        err = client_error(exc)
        if err is not None:
            raise err from exc
        trail.failed(exc)
    finally:
        trail.close()
        trail.final_text = last_text(interp.messages)
    if trail.error is not None:
        raise trail.error


def direct_completions() -> Callable[..., Iterator[Any]]:
    """``llm.completions`` without the kernel: one litellm call per turn, the adapter's tool choice.

    Open Interpreter's default tries a failed call up to four times, the kernel's hook once: one
    attempt here too, so a backend error costs the same in both modes.
    """
    litellm = importlib.import_module("litellm")

    def completions(**params: Any) -> Iterator[Any]:
        choice = choose_tool(params, to_kernel_messages(params.get("messages")), tool_choice_policy())
        if choice is not None:
            params["tool_choice"] = choice
        yield from litellm.completion(**params, num_retries=0, drop_params=True)

    return completions


def own_schema(completions: Callable[..., Any], languages: list[str]) -> Callable[..., Any]:
    """``completions`` given a copy of the ``execute`` tool listing ``languages``.

    Open Interpreter's ``execute`` schema is one module-level dict that every interpreter rewrites
    before each call: concurrent agents with other tools would otherwise send each other's lists.
    """

    def completions_with_own_schema(**params: Any) -> Any:
        tools = copy.deepcopy(params.get("tools") or [])
        for tool in tools:
            if tool.get("function", {}).get("name") == "execute":
                tool["function"]["parameters"]["properties"]["language"]["enum"] = list(languages)
        if tools:
            params["tools"] = tools
        return completions(**params)

    return completions_with_own_schema


def last_text(messages: list[dict[str, Any]]) -> str | None:
    """Open Interpreter's final message: the last non-empty assistant text, stripped."""
    for m in reversed(messages):
        content = m.get("content")
        is_text = m.get("role") == "assistant" and m.get("type") == "message" and isinstance(content, str)
        if is_text and content.strip():
            return str(content).strip()
    return None


def arguments_from_code(tool: Tool, code: str) -> dict[str, Any]:
    """The arguments of ``tool`` written as ``code`` (see the module docstring), checked."""
    props: dict[str, Any] = tool.parameters.get("properties", {})
    args: dict[str, Any] | None = None
    if code.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            value = json.loads(code)
            if isinstance(value, dict) and value and set(value) <= set(props):
                args = value
    if args is None:
        single = _single_parameter(tool)
        if single is None:
            raise InvalidRequestError(
                f"{tool.name} takes its arguments as a JSON object with keys {sorted(props)}", field="code"
            )
        args = {single: code if single == "code" else code.strip()}
    tool.validate(args)
    return args


def _unbraced(text: str) -> str:
    # Open Interpreter runs each {{...}} of its system message as Python: these texts are not templates.
    return text.replace("{{", "{ {")


def usage(tool: Tool, language: str) -> str:
    """How the model calls ``tool`` through ``execute`` (a language's ``system_message``)."""
    single = _single_parameter(tool)
    how = (
        f"code = the value of `{single}`, or a JSON object of the arguments"
        if single
        else "code = a JSON object of the arguments"
    )
    schema = json.dumps(tool.parameters, separators=(",", ":"))
    return _unbraced(
        f"# Language `{language}`: the tool {tool.name}\n{tool.description}\n"
        f'execute(language="{language}", code=...): {how}. Parameters: {schema}'
    )


def _single_parameter(tool: Tool) -> str | None:
    """The parameter plain code stands for: the only one, else the only required one (None if neither)."""
    props: dict[str, Any] = tool.parameters.get("properties", {})
    required: list[str] = tool.parameters.get("required", [])
    names = list(props) if len(props) == 1 else list(required) if len(required) == 1 else []
    return names[0] if names else None


def _is_code_runner(tool: Tool) -> bool:
    props = tool.parameters.get("properties", {})
    return list(props) == ["code"] and props["code"].get("type", "string") == "string"


class ToolLanguage:
    """An Open Interpreter language that stands for one episode tool (subclassed per tool).

    Open Interpreter reads its ``name``, ``aliases`` and ``system_message`` (the ``execute`` tool's
    language list and the system prompt); the code itself reaches the tool through
    ``computer.run``, and also through ``run`` if anything runs it in the terminal.
    """

    name: str = ""
    aliases: list[str] = []
    system_message: str = ""
    trail: Trail

    def __init__(self) -> None:
        """Open Interpreter instantiates a language without arguments when ``__init__`` takes none."""

    def run(self, code: str) -> Iterator[dict[str, Any]]:
        """Run the tool on the arguments in ``code``; yield its observation as the code's output."""
        yield from self.trail.computer_run(self.name, code, stream=True)

    def stop(self) -> None:
        """Nothing to stop: the tool call has its own deadline."""

    def terminate(self) -> None:
        """Nothing to release: the tool's state belongs to the episode."""


def languages(trail: Trail) -> list[type[ToolLanguage]]:
    """One language per episode tool: the first code runner is ``python``, the rest use their names."""
    out: list[type[ToolLanguage]] = []
    taken: set[str] = set()
    for tool in trail.tools:
        name = tool.name.lower()
        if "python" not in taken and _is_code_runner(tool):
            name = "python"
        elif name in _RESERVED or name in taken:
            name = f"{name}_tool"
        taken.add(name)
        aliases = [tool.name] if tool.name.lower() != name else []
        trail.by_language.update({n.lower(): (name, tool) for n in (name, *aliases)})
        attrs = {"name": name, "aliases": aliases, "system_message": usage(tool, name), "trail": trail}
        out.append(type(f"{name}_language", (ToolLanguage,), attrs))
    return out


@dataclasses.dataclass(slots=True)
class _Step:
    index: int
    messages_before: int
    thought: str = ""
    action: str = ""
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)
    observation: str | None = None


class Trail:
    """The agent's trajectory and budget, fed from Open Interpreter's thread by its hooks."""

    def __init__(self, spec: AgentSpec, loop: asyncio.AbstractEventLoop):
        self.spec = spec
        self.loop = loop
        self.budget = min(spec.settings.max_steps, spec.episode.max_steps)
        self.tools = [
            _watched(t, self._finish_returned) if t.name == "finish" else t for t in episode_tools(spec)
        ]
        self.steps: list[_Step] = []
        self.answer: str | None = None
        self.final_text: str | None = None
        #: A harness error of a tool call, raised once Open Interpreter has stopped.
        self.error: AIOSError | None = None
        #: Open Interpreter's message list (it may replace the list object).
        self.messages: Callable[[], list[dict[str, Any]]] = list
        self._finish_ok = False
        #: Language name or alias (lower case) -> the language's name and the tool it runs.
        self.by_language: dict[str, tuple[str, Tool]] = {}
        self.cancelled = False

    def more_turns(self) -> bool:
        """Whether the model may take another turn."""
        if self.answer is not None or self.error is not None or self.cancelled or self.spec.episode.done():
            return False
        return len(self.steps) < self.budget

    def counted(self, llm_run: Callable[[list[dict[str, Any]]], Iterator[dict[str, Any]]]) -> Any:
        """``llm.run`` as one step per model turn, answering nothing once the budget is spent."""

        def run(messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            self.close()
            if not self.more_turns():
                return
            step = _Step(len(self.steps), len(self.messages()))
            self.steps.append(step)
            for chunk in llm_run(messages):
                content = chunk.get("content")
                if chunk.get("type") == "message" and isinstance(content, str):
                    step.thought += content
                elif chunk.get("type") == "code" and isinstance(content, str):
                    # What the model asked for, until a tool call replaces it (``_record``).
                    step.action = str(chunk.get("format") or "")
                    step.arguments["code"] = step.arguments.get("code", "") + content
                yield chunk

        return run

    def computer_run(self, language: str, code: str, stream: bool = False, display: bool = False) -> Any:
        """``computer.run``: one tool call for the code (OI's output chunks, a list or a stream)."""
        out = [{"type": "console", "format": "output", "content": self.execute(str(language), str(code))}]
        return iter(out) if stream else out

    def execute(self, language: str, code: str) -> str:
        """Run the tool of ``language`` on the arguments in ``code`` (from OI's thread); the observation.

        A bad call (unknown language, bad arguments) is answered here and runs no tool.
        """
        found = self.by_language.get(language.strip().lower())
        if found is None:
            observation = f"Error: unknown language {language!r}; use one of {sorted(self.by_language)}"
            return self._record(language, {"code": code}, observation)
        language, tool = found
        try:
            args = arguments_from_code(tool, code)
        except InvalidRequestError as exc:
            return self._record(tool.name, {"code": code}, f"Error: {exc.message}")
        self._finish_ok = False
        call = self._call(language, tool, args)
        observation = run_on_loop(self.loop, call, timeout=tool.timeout + BRIDGE_SLACK_S)
        if tool.name == "finish" and self._finish_ok:
            self.answer = str(args.get("answer", observation))
        return self._record(tool.name, args, observation)

    async def _call(self, language: str, tool: Tool, args: dict[str, Any]) -> str:
        body = tool_runner(self.spec, tool)
        try:
            if self.spec.kernel is None:
                return await body(args)
            # The syscall the adapter makes of an execution in OI's terminal, made here directly.
            observation: str = await sdk.tool_syscall(
                tool_name(language), body, args, agent=self.spec.name, kernel=self.spec.kernel
            )
            return observation
        except AIOSError as exc:
            # Open Interpreter would show it to the model as a traceback: kept for the caller.
            self.error = exc
            raise

    def _finish_returned(self) -> None:
        self._finish_ok = True

    def _record(self, action: str, arguments: dict[str, Any], observation: str) -> str:
        if self.steps:
            step = self.steps[-1]
            step.action, step.arguments, step.observation = action, arguments, observation
        return observation

    def close(self) -> None:
        """Fill the last step's observation from what Open Interpreter answered itself, if anything."""
        if not self.steps or self.steps[-1].observation is not None:
            return
        step = self.steps[-1]
        outputs = [
            str(m.get("content") or "")
            for m in self.messages()[step.messages_before :]
            if m.get("role") == "computer" and m.get("format") == "output"
        ]
        step.observation = "\n".join(outputs)

    def failed(self, exc: Exception) -> None:
        """Open Interpreter failed (not the backend): the run ends, the failure is its last step."""
        note = f"Open Interpreter failed: {type(exc).__name__}: {exc}"
        self.steps.append(_Step(len(self.steps), len(self.messages()), observation=note[:2000]))

    def output(self) -> AgentOutput:
        """The answer and the steps, JSON-able."""
        steps: list[dict[str, JSON]] = [
            {
                "index": s.index,
                "thought": s.thought.strip(),
                "action": s.action,
                "arguments": json.loads(json.dumps(s.arguments, default=str)),
                "observation": s.observation or "",
            }
            for s in self.steps
        ]
        return AgentOutput(answer=self.answer if self.answer is not None else self.final_text, steps=steps)


def _watched(tool: Tool, on_ok: Callable[[], None]) -> Tool:
    """``tool`` that reports each call that returned (did not raise)."""
    fn = tool.fn
    if tool.is_async:

        async def afn(**kwargs: Any) -> Any:
            value = await fn(**kwargs)
            on_ok()
            return value

        return dataclasses.replace(tool, fn=afn)

    def sfn(**kwargs: Any) -> Any:
        value = fn(**kwargs)
        on_ok()
        return value

    return dataclasses.replace(tool, fn=sfn)
