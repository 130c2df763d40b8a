"""AutoGen classic (ag2 0.x, ``import autogen``) as a benchmark agent: its two-agent tool loop.

An ``AssistantAgent`` proposes tool calls and a ``UserProxyAgent`` (``human_input_mode="NEVER"``,
no code execution) executes them, driven by ``user_proxy.initiate_chat(assistant, max_turns=...)``
— the loop of ag2's tool-use docs. Each episode tool is an ``autogen.tools.Tool`` built from its
JSON schema, proposed by the assistant and executed by the proxy; its body is
``framework_support.tool_runner``, so a model's bad arguments come back as the observation.

What is set the way the native ReAct agent does it, so "which framework" is the only difference:
the ReAct system prompt, a forced tool call on every turn (``tool_choice="required"``, passed per
call by a reply function registered on the assistant — ag2's config entries cannot name a tool),
``finish`` forced on the last turn when ``answer_on_last_step``, at most ``min(max_steps,
episode.max_steps)`` model turns, and the end of the chat once ``finish`` succeeded or the
environment ended the episode. A turn without a tool call gets the proxy's auto reply as its
observation ("no tool was called"), as in ReAct.

The chat is synchronous: it runs in a thread of its own inside ``endpoint`` (the thread inherits
the context, so with the kernel the adapter's sync LLM path reaches the run's kernel; a dedicated
thread, not the default executor, because the kernel runs tool syscalls there and a chat blocked
on one must never hold the worker it needs). ag2's console output is silenced and its response
cache is off (``cache_seed=None``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from aios.adapters.react_reflexion.agents import REACT_SYSTEM
from aios.errors import AIOSError
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

ASSISTANT = "assistant"
EXECUTOR = "user_proxy"
#: The proxy's answer to a turn without a tool call (ReAct's observation for it).
NO_TOOL = "Observation: no tool was called. Call a tool."
FORCE_FINISH: dict[str, Any] = {"type": "function", "function": {"name": "finish"}}
#: Seconds a cancelled run waits for its chat thread to stop before leaving the patched block.
STOP_WAIT_S = 10.0


def _ag2() -> Any:
    """``autogen``, imported when an agent is built (it is absent where mypy runs)."""
    return importlib.import_module("autogen")


class _Quiet:
    """An ag2 IOStream that shows nothing (a benchmark prints its own progress)."""

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        """Drop the text."""

    def send(self, message: Any) -> None:
        """Drop the event."""

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        """Never asked (``human_input_mode="NEVER"``)."""
        return ""


class _Chat:
    """One episode's assistant/user-proxy pair, the turn budget and what ``finish`` received."""

    def __init__(self, spec: AgentSpec, ep: Endpoint, loop: asyncio.AbstractEventLoop):
        self.spec = spec
        self.endpoint = ep
        self.loop = loop
        self.budget = max(0, min(spec.settings.max_steps, spec.episode.max_steps))
        self.turns = 0
        self.finished = False
        self.stopped = False
        self.answer: str | None = None
        #: A harness error a tool raised: ag2 would show it to the model; it ends the run instead.
        self.error: AIOSError | None = None
        #: What made ag2 itself fail mid-chat (a model output it could not handle), if anything.
        self.failure: str | None = None
        self.tools = episode_tools(spec)
        self.history: list[dict[str, Any]] = []

    def _agents(self) -> tuple[Any, Any]:
        autogen, ep = _ag2(), self.endpoint
        s, episode = self.spec.settings, self.spec.episode
        system = REACT_SYSTEM if not episode.system else f"{REACT_SYSTEM}\n{episode.system}"
        # price: ag2 warns on every call for a model it has no price for (the cost is not measured);
        # max_retries: a failed call is the harness's error to record, not the client's to repeat.
        entry = {
            "model": ep.model,
            "base_url": ep.base_url,
            "api_key": ep.api_key,
            "price": [0.0, 0.0],
            "max_retries": 0,
        }
        assistant = autogen.AssistantAgent(
            ASSISTANT,
            system_message=system,
            llm_config={
                "config_list": [entry],
                "temperature": s.temperature,
                "max_tokens": s.action_tokens,
                "cache_seed": None,
            },
            is_termination_msg=lambda _message: self.over(),
        )
        proxy = autogen.UserProxyAgent(
            EXECUTOR,
            human_input_mode="NEVER",
            code_execution_config=False,
            default_auto_reply=NO_TOOL,
        )
        for tool in self.tools:
            ag_tool = autogen.tools.Tool(
                name=tool.name,
                description=tool.description,
                func_or_tool=self._function(tool),
                parameters_json_schema=tool.parameters,
            )
            ag_tool.register_for_llm(assistant)
            ag_tool.register_for_execution(proxy)
        assistant.register_reply([autogen.Agent, None], self._reply, position=0)
        return assistant, proxy

    def over(self) -> bool:
        """Whether the chat must end: finished, ended by the environment, out of turns, or stopped."""
        return self.finished or self.stopped or self.turns >= self.budget or self.spec.episode.done()

    def _reply(self, recipient: Any, messages: Any, sender: Any, config: Any) -> tuple[bool, Any]:
        """The assistant's turn: ag2's own LLM reply with the tool call forced, within the budget."""
        if self.over():
            return True, None  # no reply: the chat ends
        self.turns += 1
        last = self.turns == self.budget and self.spec.settings.answer_on_last_step
        reply: tuple[bool, Any] = recipient.generate_oai_reply(
            messages, sender, tool_choice=FORCE_FINISH if last else "required"
        )
        return reply

    def _function(self, tool: Tool) -> Callable[..., str]:
        run = tool_runner(self.spec, tool)

        def call(**arguments: Any) -> str:
            if self.stopped:
                return "Error: the run was stopped"

            async def observe() -> str:
                return await run(arguments)

            # The tool runs on the run's loop (where its kernel and sandbox live), not in this thread.
            try:
                observation = run_on_loop(self.loop, observe(), timeout=tool.timeout + BRIDGE_SLACK_S)
            except AIOSError as exc:
                self.error, self.stopped = exc, True
                raise
            if tool.name == "finish":
                self._finish(tool, arguments, observation)
            return observation

        call.__name__ = tool.name
        return call

    def _finish(self, tool: Tool, arguments: dict[str, Any], observation: str) -> None:
        """Keep the answer; end the chat if ``finish`` succeeded (an environment may refuse it)."""
        try:
            args = tool.validate(arguments)
        except AIOSError:
            return  # the observation already tells the model what was wrong
        self.answer = str(args.get("answer", observation))
        episode = self.spec.episode
        if episode.finish is None:
            self.finished = True
        elif episode.is_done is not None:
            self.finished = episode.done()
        else:
            self.finished = not observation.startswith("Error: ")

    def chat(self) -> None:
        """Build the two agents and run their chat to its end (in the chat thread: ag2 is sync)."""
        io_stream = importlib.import_module("autogen.io.base").IOStream
        with io_stream.set_default(_Quiet()):
            assistant, proxy = self._agents()
            try:
                proxy.initiate_chat(
                    assistant, message=self.spec.episode.prompt, max_turns=self.budget + 1, silent=True
                )
            except AIOSError:
                raise
            except Exception as exc:
                if client_error(exc) is not None:
                    raise
                # ag2 gave up on something the model wrote: the run ends without an answer.
                self.failure = f"{type(exc).__name__}: {exc}"
            finally:
                self.history = list(assistant.chat_messages.get(proxy, []))

    def output(self) -> AgentOutput:
        """The answer and one step per tool call (or per turn without one), from the chat history."""
        steps = _steps(self.history)
        answer = self.answer
        if self.failure is not None:
            steps.append(_step(len(steps), "", "", {}, f"the agent failed: {self.failure}"))
        elif answer is None:
            texts = [m.get("content") for m in self.history if m.get("role") == "assistant"]
            answer = next((t.strip() for t in reversed(texts) if isinstance(t, str) and t.strip()), None)
        return AgentOutput(answer=answer, steps=steps)


def _steps(history: list[dict[str, Any]]) -> list[dict[str, JSON]]:
    """ag2's history (the assistant's view) as ReAct-shaped steps."""
    results: dict[str, str] = {}
    for message in history:
        for response in message.get("tool_responses") or []:
            results[str(response.get("tool_call_id"))] = _text(response.get("content"))
    steps: list[dict[str, JSON]] = []
    for i, message in enumerate(history):
        if message.get("role") != "assistant":
            continue
        thought = _text(message.get("content")).strip()
        calls = message.get("tool_calls") or []
        if not calls:
            after = history[i + 1] if i + 1 < len(history) else {}
            steps.append(_step(len(steps), thought, "", {}, _text(after.get("content"))))
            continue
        for call in calls:
            fn = call.get("function") or {}
            observation = results.get(str(call.get("id")), "")
            steps.append(_step(len(steps), thought, str(fn.get("name", "")), _arguments(fn), observation))
            thought = ""
    return steps


def _step(
    index: int, thought: str, action: str, arguments: dict[str, Any], observation: str
) -> dict[str, JSON]:
    return {
        "index": index,
        "thought": thought,
        "action": action,
        "arguments": arguments,
        "observation": observation,
    }


def _arguments(fn: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments as a JSON-able dict ({} when the model wrote no valid JSON object)."""
    raw = fn.get("arguments")
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return {}
    return json.loads(json.dumps(value, default=str)) if isinstance(value, dict) else {}


def _text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content, default=str)


async def run(spec: AgentSpec) -> AgentOutput:
    """ag2's AssistantAgent + UserProxyAgent tool loop on ``spec.episode``, through ``endpoint``."""
    loop = asyncio.get_running_loop()
    async with endpoint(spec, "autogen") as ep:
        chat = _Chat(spec, ep, loop)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="aios-ag2")
        ctx = contextvars.copy_context()
        future = loop.run_in_executor(pool, functools.partial(ctx.run, chat.chat))
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # Stop at the next turn and keep the patch in place until the thread has left ag2.
            chat.stopped = True
            done, _ = await asyncio.wait([future], timeout=STOP_WAIT_S)
            for finished in done:
                finished.exception()  # retrieved: the timeout is what the caller hears about
            raise
        except AIOSError:
            raise
        except Exception as exc:
            err = client_error(exc)
            if err is not None:
                raise err from exc
            raise
        finally:
            pool.shutdown(wait=False)
    if chat.error is not None:
        raise chat.error
    return chat.output()
