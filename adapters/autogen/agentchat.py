"""``aios.patch("autogen_agentchat")``: AutoGen 0.4+ (autogen-agentchat / autogen-ext 0.7) on the kernel.

What is patched, and why there:

- ``BaseOpenAIChatCompletionClient.create`` / ``create_stream`` (autogen-ext's OpenAI and Azure
  OpenAI clients). The client's own ``_process_create_args`` still converts the ``LLMMessage``s,
  tools, ``tool_choice`` and ``json_output`` into OpenAI form, so the kernel sees exactly what
  OpenAI would; the answer comes back as ``CreateResult`` (text, or a list of ``FunctionCall``
  with any text as ``thought``), with the client's usage counters updated. A
  ``CancellationToken`` cancels the syscall.
- ``autogen_core.tools.BaseTool.run_json`` — every tool run by a workbench or agent; a tool
  syscall run on the caller's loop and context (also when the kernel is the process default).
- ``AssistantAgent.on_messages_stream`` — only to know which agent speaks.

Identity: ``with aios.sdk.agent(...)`` if the user set one, else the ``AssistantAgent``'s name,
else ``"autogen_agentchat"``.

Streaming: with a kernel running in this event loop (``async with Kernel()``) the text arrives
piece by piece as the kernel generates it; with the process-default kernel the whole answer is
fetched first and then yielded in the pieces the kernel produced it in. Either way the last item
is the ``CreateResult``, and an answer that turns out to be a tool call yields no text pieces.

Forcing a tool call: ``AssistantAgent`` 0.7.5 never passes ``tool_choice`` to the client (only
``"none"`` for its reflection call), and the stock client overwrites a configured one with the
call's default ``"auto"``. Under this adapter a ``tool_choice`` create argument given to the
client, ``OpenAIChatCompletionClient(model=..., tool_choice="required")`` (the client keeps every
OpenAI create argument it is given), applies to calls that leave ``tool_choice`` unset; a
``tool_choice`` passed to ``create`` always wins.

Not covered: model clients other than autogen-ext's OpenAI ones (Anthropic, Ollama, llama.cpp,
Semantic Kernel, ...) still call their own SDKs; streaming tools' ``run_json_stream`` is not a
syscall; the client's ``count_tokens``/``remaining_tokens`` still use tiktoken, which downloads
its encodings on first use (set ``TIKTOKEN_CACHE_DIR`` offline; the default agents never count).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aios import sdk
from aios.adapters.autogen import common
from aios.adapters.autogen.completion import response_format
from aios.adapters.base import PatchTarget
from aios.kernel import current_kernel
from aios.types import LLMResult, Message

FALLBACK_AGENT = "autogen_agentchat"
_CLIENT = "autogen_ext.models.openai._openai_client.BaseOpenAIChatCompletionClient"

#: Marks a ``tool_choice`` the caller did not pass (the stock default is "auto").
_UNSET: Any = object()


@dataclass(slots=True)
class _Call:
    messages: list[Message]
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Whether the model may answer with a call (then streamed text that starts a JSON object waits).
    may_call: bool = False


def _prepare(
    client: Any,
    messages: Sequence[Any],
    tools: Sequence[Any],
    tool_choice: Any,
    json_output: Any,
    extra_create_args: Mapping[str, Any],
) -> _Call:
    """The kernel request for a client call, built by the client's own argument processing."""
    explicit = tool_choice is not _UNSET
    params = client._process_create_args(
        messages, tools, tool_choice if explicit else "auto", json_output, extra_create_args
    )
    args: dict[str, Any] = params.create_args
    kwargs: dict[str, Any] = {"model": args.get("model")}
    choice: Any = None
    if params.tools:
        kwargs["tools"] = [dict(t) for t in params.tools]
        choice = args.get("tool_choice") if explicit else client._create_args.get("tool_choice", "auto")
        kwargs["tool_choice"] = choice
    if args.get("temperature") is not None:
        kwargs["temperature"] = args["temperature"]
    max_tokens = args.get("max_tokens") or args.get("max_completion_tokens")
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    stop = args.get("stop")
    if stop is not None:
        kwargs["stop"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = response_format(params.response_format) or response_format(args.get("response_format"))
    if fmt is not None:
        kwargs["response_format"] = fmt
    return _Call(
        messages=[dict(m) for m in params.messages],
        kwargs=kwargs,
        may_call=bool(params.tools) and choice != "none",
    )


def _create_result(client: Any, result: LLMResult) -> Any:
    """``result`` as autogen-core's ``CreateResult``; the client's usage counters are advanced."""
    core = common.framework("autogen_core")
    models = common.framework("autogen_core.models")
    stop_reason = common.framework("autogen_ext.models._utils.normalize_stop_reason").normalize_stop_reason
    normalize_name = common.framework("autogen_ext.models.openai._openai_client").normalize_name

    usage = models.RequestUsage(
        prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens
    )
    content: str | list[Any]
    if result.tool_calls:
        content = [
            core.FunctionCall(id=tc.id, arguments=tc.arguments, name=normalize_name(tc.name))
            for tc in result.tool_calls
        ]
        finish, thought = "function_calls", result.text or None
    else:
        content, finish, thought = result.text, stop_reason(result.finish_reason), None
    for attr in ("_total_usage", "_actual_usage"):
        old = getattr(client, attr)
        setattr(
            client,
            attr,
            models.RequestUsage(
                prompt_tokens=old.prompt_tokens + usage.prompt_tokens,
                completion_tokens=old.completion_tokens + usage.completion_tokens,
            ),
        )
    return models.CreateResult(
        finish_reason=finish, content=content, usage=usage, cached=False, logprobs=None, thought=thought
    )


async def _linked(coro: Any, cancellation_token: Any) -> Any:
    """Await ``coro`` as a task that ``cancellation_token`` (if any) cancels."""
    task = asyncio.ensure_future(coro)
    if cancellation_token is not None:
        cancellation_token.link_future(task)
    return await task


def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
    """``create`` answered by an LLM syscall, as a ``CreateResult``."""

    @functools.wraps(original)
    async def create(
        self: Any,
        messages: Sequence[Any],
        *,
        tools: Sequence[Any] = (),
        tool_choice: Any = _UNSET,
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] | None = None,
        cancellation_token: Any = None,
    ) -> Any:
        call = _prepare(self, messages, tools, tool_choice, json_output, extra_create_args or {})
        who = common.agent_name(FALLBACK_AGENT)
        result = await _linked(sdk.llm_chat(call.messages, agent=who, **call.kwargs), cancellation_token)
        return _create_result(self, result)

    return create


def wrap_create_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    """``create_stream``: text pieces from an LLM syscall, then the ``CreateResult``."""

    @functools.wraps(original)
    async def create_stream(
        self: Any,
        messages: Sequence[Any],
        *,
        tools: Sequence[Any] = (),
        tool_choice: Any = _UNSET,
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] | None = None,
        cancellation_token: Any = None,
        max_consecutive_empty_chunk_tolerance: int = 0,
        include_usage: bool | None = None,
    ) -> AsyncGenerator[Any, None]:
        call = _prepare(self, messages, tools, tool_choice, json_output, extra_create_args or {})
        who = common.agent_name(FALLBACK_AGENT)
        kernel = current_kernel.get()
        if kernel is None or not kernel.running:
            result = await _linked(sdk.llm_chat(call.messages, agent=who, **call.kwargs), cancellation_token)
            if not result.tool_calls:
                for piece in result.segments or [result.text]:
                    if piece:
                        yield piece
        else:
            stream = await sdk.llm_stream(call.messages, agent=who, **call.kwargs)
            # A call is a JSON object: text that may be one is held until the result says.
            mode = "undecided" if call.may_call else "text"
            held: list[str] = []
            async for piece in _pieces(stream, cancellation_token):
                if mode == "text":
                    yield piece
                    continue
                held.append(piece)
                head = "".join(held).lstrip()
                if mode == "undecided" and head and not head.startswith("{"):
                    mode = "text"
                    for waiting in held:
                        yield waiting
                    held.clear()
            assert stream.result is not None
            result = stream.result
            if not result.tool_calls:
                for waiting in held:
                    yield waiting
        yield _create_result(self, result)

    return create_stream


async def _pieces(stream: Any, cancellation_token: Any) -> AsyncIterator[str]:
    """The stream's pieces, each awaited as a step that ``cancellation_token`` can cancel."""
    it = aiter(stream)
    try:
        while True:
            try:
                piece: str = await _linked(anext(it), cancellation_token)
            except StopAsyncIteration:
                return
            yield piece
    finally:
        await it.aclose()


def wrap_run_json(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseTool.run_json`` as a tool syscall, run on the caller's loop and context."""

    @functools.wraps(original)
    async def run_json(
        self: Any, args: Mapping[str, Any], cancellation_token: Any, call_id: str | None = None
    ) -> Any:
        return await common.tool_async(
            str(getattr(self, "name", "")),
            lambda: original(self, args, cancellation_token, call_id=call_id),
            agent=common.agent_name(FALLBACK_AGENT),
        )

    return run_json


def wrap_on_messages_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    """``on_messages_stream`` with this agent recorded as the speaker during each step."""

    @functools.wraps(original)
    async def on_messages_stream(self: Any, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        async for item in common.speaking(str(self.name), original(self, *args, **kwargs)):
            yield item

    return on_messages_stream


@dataclass(frozen=True, slots=True)
class AgentChatAdapter:
    """The autogen-agentchat adapter: model client calls and tool runs as syscalls."""

    name: str = "autogen_agentchat"
    framework: str = "autogen_agentchat"

    def targets(self) -> list[PatchTarget]:
        """The patched attributes (autogen-agentchat is imported by the patcher first)."""
        return [
            PatchTarget(f"{_CLIENT}.create", wrap_create),
            PatchTarget(f"{_CLIENT}.create_stream", wrap_create_stream),
            PatchTarget("autogen_core.tools._base.BaseTool.run_json", wrap_run_json),
            PatchTarget(
                "autogen_agentchat.agents._assistant_agent.AssistantAgent.on_messages_stream",
                wrap_on_messages_stream,
            ),
        ]


def make_adapter() -> AgentChatAdapter:
    """The adapter registered as ``autogen_agentchat``."""
    return AgentChatAdapter()
