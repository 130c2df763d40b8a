"""LangChain's own tool-calling agent on an episode: ``ChatOpenAI.bind_tools`` and the tool loop.

The agent is the loop LangChain documents (and ``create_agent`` runs): the chat model, bound to
the episode's tools with a forced call, answers with an ``AIMessage``; each of its ``tool_calls``
is run with ``StructuredTool.ainvoke(tool_call)``, whose ``ToolMessage`` goes back into the
conversation; an ``AIMessage`` without tool calls is the final answer. Only langchain-core and
langchain-openai are used (the benchmark environment has no langgraph), so the loop is written
here; it stops when ``finish`` accepted an answer, the environment ended the episode, or the
turn budget is spent (the last turn forces ``finish`` when the settings ask for it). Each tool
call is one step of the trajectory; its ``index`` is the model turn that made it.

The model is a plain ``ChatOpenAI`` pointed at ``framework_support.endpoint``: with the kernel,
``aios.patch("langchain")`` answers its calls and makes each ``ainvoke`` of a tool a tool
syscall; without it, its client talks to the loopback relay over the backend. ``max_retries=0``
keeps one model turn one backend call in both modes, so the accounting matches.

A model's mistakes never end the run with an error: an unknown tool, arguments that are not a
JSON object or do not fit the schema (checked before anything runs, as in the native ReAct
agent), or an answer ``finish`` rejects are observations; a turn without a tool call ends the
run with its text as the answer. Only harness and backend errors (``AIOSError``; the relay's
HTTP errors are translated to them) propagate.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import import_module
from typing import Any

from aios.adapters.react_reflexion.agents import REACT_SYSTEM
from aios.errors import InvalidRequestError
from aios.managers.tools import Tool

from ..core import JSON, AgentOutput
from ..framework_support import Endpoint, client_error, endpoint, episode_tools, tool_runner
from ..frameworks import AgentSpec

ADAPTER = "langchain"


async def run(spec: AgentSpec) -> AgentOutput:
    """Run LangChain's tool-calling agent on ``spec.episode`` (through the kernel or the relay)."""
    # The agent's own HTTP client, closed with the run: LangChain's default one is cached per
    # base URL for the process, and each run's relay has a new URL.
    client = import_module("openai").DefaultAsyncHttpxClient()
    try:
        async with endpoint(spec, ADAPTER) as ep:
            return await _Agent(spec, ep, client).run()
    finally:
        await client.aclose()


class _Accepted:
    """Whether the answer tool's function returned (an environment's ``finish`` may reject)."""

    def __init__(self) -> None:
        self.accepted = False

    def watch(self, tool: Tool) -> Tool:
        """``tool`` whose successful runs set ``accepted``."""
        fn = tool.fn
        if tool.is_async:

            async def afn(*args: Any, **kwargs: Any) -> Any:
                value = await fn(*args, **kwargs)
                self.accepted = True
                return value

            return dataclasses.replace(tool, fn=afn)

        def sfn(*args: Any, **kwargs: Any) -> Any:
            value = fn(*args, **kwargs)
            self.accepted = True
            return value

        return dataclasses.replace(tool, fn=sfn)


def _structured_tool(spec: AgentSpec, tool: Tool) -> Any:
    """``tool`` as a LangChain ``StructuredTool`` (its JSON schema as ``args_schema``)."""
    structured = import_module("langchain_core.tools").StructuredTool
    execute = tool_runner(spec, tool)

    async def body(**arguments: Any) -> str:
        return await execute(arguments)

    return structured.from_function(
        coroutine=body,
        name=tool.name,
        description=tool.description,
        args_schema=dict(tool.parameters),
        infer_schema=False,
    )


def _step(index: int, thought: str, action: str, arguments: Any, observation: str) -> dict[str, JSON]:
    args: dict[str, JSON] = dict(arguments) if isinstance(arguments, dict) else {}
    return {
        "index": index,
        "thought": thought,
        "action": action,
        "arguments": args,
        "observation": observation,
    }


class _Agent:
    """One run of the loop: the conversation, the trajectory and the answer."""

    def __init__(self, spec: AgentSpec, ep: Endpoint, http_client: Any):
        self.spec = spec
        self.episode = spec.episode
        self.finish = _Accepted()
        tools = episode_tools(spec)
        answer_tool = tools[-1]
        self.finish_name = answer_tool.name
        tools[-1] = self.finish.watch(answer_tool)
        self.schemas = {t.name: t for t in tools}
        self.tools = {t.name: _structured_tool(spec, t) for t in tools}
        chat_openai = import_module("langchain_openai").ChatOpenAI
        s = spec.settings
        llm = chat_openai(
            base_url=ep.base_url,
            api_key=ep.api_key,
            model=ep.model,
            temperature=s.temperature,
            max_tokens=s.action_tokens,
            max_retries=0,
            http_async_client=http_client,
        )
        bound = list(self.tools.values())
        self.acting = llm.bind_tools(bound, tool_choice="required")
        self.answering = llm.bind_tools(bound, tool_choice=self.finish_name)
        self.turns = min(s.max_steps, self.episode.max_steps)
        self.steps: list[dict[str, JSON]] = []
        self.answer: str | None = None
        self.last_text: str | None = None

    async def run(self) -> AgentOutput:
        """Model turns until ``finish`` accepted an answer, the episode ended or the budget is spent."""
        msgs = import_module("langchain_core.messages")
        system = REACT_SYSTEM if not self.episode.system else f"{REACT_SYSTEM}\n{self.episode.system}"
        messages: list[Any] = [msgs.SystemMessage(system), msgs.HumanMessage(self.episode.prompt)]
        for turn in range(self.turns):
            last = self.spec.settings.answer_on_last_step and turn == self.turns - 1
            if not await self._turn(turn, self.answering if last else self.acting, messages):
                break
        answer = self.answer if self.answer is not None else self.last_text
        return AgentOutput(answer=answer, steps=self.steps)

    async def _ask(self, model: Any, messages: list[Any]) -> Any:
        openai = import_module("openai")
        try:
            return await model.ainvoke(messages)
        except openai.APIError as exc:
            raise (client_error(exc) or exc) from None

    async def _turn(self, turn: int, model: Any, messages: list[Any]) -> bool:
        """One model turn and its tool calls; whether the loop goes on."""
        msgs = import_module("langchain_core.messages")
        ai = await self._ask(model, messages)
        thought = str(ai.text).strip()
        if thought:
            self.last_text = thought
        invalid = list(ai.invalid_tool_calls)
        if not ai.tool_calls and not invalid:
            # LangChain's agent loop: a message without tool calls is the final answer.
            self.steps.append(_step(turn, thought, "", {}, "no tool was called"))
            return False
        # Unparsable calls stay out of the history: no backend accepts a call without its result.
        messages.append(ai.model_copy(update={"invalid_tool_calls": []}) if invalid else ai)
        for call in ai.tool_calls:
            observation = await self._call(call, messages)
            self.steps.append(_step(turn, thought, call["name"], call["args"], observation))
            thought = ""
            if call["name"] == self.finish_name and self.finish.accepted:
                self.answer = str(call["args"].get("answer", observation))
                return False
            if self.episode.done():
                return False
        if invalid:
            notes = [f"the arguments of {c.get('name')!r} are not a JSON object" for c in invalid]
            messages.append(msgs.HumanMessage(f"Observation: {'; '.join(notes)}. Call a tool again."))
            for c, note in zip(invalid, notes, strict=True):
                self.steps.append(_step(turn, thought, str(c.get("name") or ""), {}, note))
                thought = ""
        return not self.episode.done()

    async def _call(self, call: Any, messages: list[Any]) -> str:
        """Run one tool call through LangChain's tool path; its observation (also appended)."""
        msgs = import_module("langchain_core.messages")
        call_id = call.get("id") or ""
        tool = self.tools.get(call["name"])
        if tool is None:
            observation = f"Error: unknown tool {call['name']!r}; use one of {sorted(self.tools)}"
            messages.append(msgs.ToolMessage(observation, tool_call_id=call_id, status="error"))
            return observation
        try:
            # The schema check LangChain's args_schema does for pydantic schemas (not for a JSON
            # schema dict), made before the tool path: as in the native ReAct agent, arguments
            # that miss the schema run nothing (no tool call or syscall in either mode).
            self.schemas[call["name"]].validate(call["args"])
        except InvalidRequestError as exc:
            observation = f"invalid arguments for {call['name']}: {exc.message}"
            messages.append(msgs.ToolMessage(observation, tool_call_id=call_id, status="error"))
            return observation
        # A ToolCall in gives a ToolMessage out (the bare output only for a call without an id).
        result = await tool.ainvoke(call)
        message = (
            result if isinstance(result, msgs.ToolMessage) else msgs.ToolMessage(result, tool_call_id=call_id)
        )
        messages.append(message)
        content = message.content
        return content if isinstance(content, str) else json.dumps(content)
