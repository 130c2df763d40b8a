"""``aios.patch("autogen")``: AutoGen classic (the 0.2 API, from ``ag2[openai]<1``) on the kernel.

What is patched, and why there:

- ``OpenAIWrapper.create`` — every LLM call of every ``ConversableAgent`` (and of code that uses
  the wrapper directly) passes here, whatever the provider in ``config_list``, so the kernel's
  routing table decides where it runs. The wrapper's own helpers merge the first config entry
  with the call (tools, ``tool_choice``, ``max_tokens``, context templates), the kernel answers,
  and the answer comes back as the ``ChatCompletion`` ag2 reads, with the wrapper's usage
  summary updated. The cost is 0 unless the config names a ``price``. Async chats run this in
  ag2's executor thread.
- ``ConversableAgent.execute_function`` / ``a_execute_function`` — every function/tool call; a
  tool syscall each, recorded failed when the function raised (ag2 still gets its
  ``"Error: ..."`` result).
- ``ConversableAgent.run_code`` (the legacy ``code_execution_config`` path, one syscall per code
  block) and ``LocalCommandLineCodeExecutor.execute_code_blocks`` (the executor path); the code
  runs in AutoGen's own executor, as a syscall recorded failed on a non-zero exit code. Docker
  is never turned on here.
- ``ConversableAgent.generate_reply`` / ``a_generate_reply`` — only to know which agent speaks
  (for code executors, which do not know their agent).

Identity: ``with aios.sdk.agent(...)`` if the user set one, else the AutoGen agent's ``name``
(the ``agent=`` ag2 passes to ``create``, or the agent executing the tool), else ``"autogen"``.

Forcing a tool call: ag2's own config entry field, ``{"model": ..., "tool_choice": "required"}``
in ``config_list``, is passed to the kernel as is; the embedded backend then emits a
grammar-constrained call.

Not covered: ag2's response cache (``cache_seed``/``cache``), ``filter_func`` and its runtime
logging of LLM calls are bypassed (the kernel serves and records every call); only the first
``config_list`` entry's parameters are used (fallback between entries is the kernel's routing);
``n > 1`` is not supported; a pydantic ``response_format`` is sent as its JSON schema and the
answer comes back as JSON text. ``stream=True`` sends the answer through ag2's IOStream in the
kernel's pieces once it is complete. The LLM call is synchronous, so it goes to the
process-default kernel (``sdk.start_default_kernel(config)`` chooses it), also in async chats
inside ``async with Kernel()``: ag2's executor thread does not carry the caller's context.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aios import sdk
from aios.adapters.autogen import common, completion
from aios.adapters.base import PatchTarget

FALLBACK_AGENT = "autogen"
_AGENT = "autogen.agentchat.conversable_agent.ConversableAgent"


def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
    """``OpenAIWrapper.create`` answered by an LLM syscall, in ag2's response shape."""

    @functools.wraps(original)
    def create(self: Any, **config: Any) -> Any:
        full = _merged_config(self, config)
        create_config, extra = self._separate_create_config(full)
        params = self._construct_create_params(create_config, extra)
        call = completion.chat_call(params)
        who = common.agent_name(FALLBACK_AGENT, extra.get("agent"))
        result = sdk.llm_chat_sync(call.messages, model=call.model, agent=who, **call.kwargs)
        response = completion.to_chat_completion(
            result, model=call.model, legacy_functions=call.legacy_functions
        )
        price = extra.get("price")
        if isinstance(price, int | float):
            price = (price, price)
        cost = float(self._cost_with_customized_price(response, tuple(price))) if price else 0.0
        response.cost = cost
        response.message_retrieval_function = completion.message_retrieval
        usage = completion.usage_record(response, cost)
        self._update_usage(actual_usage=usage, total_usage=dict(usage))
        if call.stream and result.text and not result.tool_calls:
            _echo_stream(result.segments or [result.text])
        return response

    return create


def _merged_config(wrapper: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The call's config merged with the first config entry, exactly as ag2 merges it per client."""
    merge = common.framework("autogen.oai.client_utils").merge_config_with_tools
    entries = wrapper._config_list or [{}]
    merged: dict[str, Any] = merge(dict(config), dict(entries[0]))
    return merged


def _echo_stream(pieces: list[str]) -> None:
    """Show a ``stream=True`` answer the way ag2's OpenAI client does, through the IOStream."""
    stream_event = common.framework("autogen.events.client_events").StreamEvent
    iostream = common.framework("autogen.io.base").IOStream.get_default()
    for piece in pieces:
        if piece:
            iostream.send(stream_event(content=piece))


def wrap_execute_function(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ConversableAgent.execute_function`` as a tool syscall of the executing agent."""

    @functools.wraps(original)
    def execute_function(
        self: Any, func_call: dict[str, Any], call_id: str | None = None, verbose: bool = False
    ) -> tuple[bool, dict[str, Any]]:
        def run() -> tuple[bool, dict[str, Any]]:
            outcome: tuple[bool, dict[str, Any]] = original(self, func_call, call_id=call_id, verbose=verbose)
            if not outcome[0]:
                raise common.Unsuccessful(outcome)
            return outcome

        return common.tool_sync(_func_name(func_call), run, agent=common.agent_name(FALLBACK_AGENT, self))

    return execute_function


def wrap_a_execute_function(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``ConversableAgent.a_execute_function`` as a tool syscall, run on the caller's loop."""

    @functools.wraps(original)
    async def a_execute_function(
        self: Any, func_call: dict[str, Any], call_id: str | None = None, verbose: bool = False
    ) -> tuple[bool, dict[str, Any]]:
        async def run() -> tuple[bool, dict[str, Any]]:
            outcome: tuple[bool, dict[str, Any]] = await original(
                self, func_call, call_id=call_id, verbose=verbose
            )
            if not outcome[0]:
                raise common.Unsuccessful(outcome)
            return outcome

        who = common.agent_name(FALLBACK_AGENT, self)
        return await common.tool_async(_func_name(func_call), run, agent=who)

    return a_execute_function


def _func_name(func_call: Any) -> str:
    name = func_call.get("name") if isinstance(func_call, Mapping) else None
    return name if isinstance(name, str) else ""


def wrap_run_code(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ConversableAgent.run_code`` (one legacy code block) as a tool syscall named ``run_code``."""

    @functools.wraps(original)
    def run_code(self: Any, code: str, **kwargs: Any) -> tuple[int, str, str | None]:
        def run() -> tuple[int, str, str | None]:
            outcome: tuple[int, str, str | None] = original(self, code, **kwargs)
            if outcome[0] != 0:
                raise common.Unsuccessful(outcome)
            return outcome

        return common.tool_sync("run_code", run, agent=common.agent_name(FALLBACK_AGENT, self))

    return run_code


def wrap_executor(original: Callable[..., Any]) -> Callable[..., Any]:
    """``LocalCommandLineCodeExecutor.execute_code_blocks`` as a tool syscall of the speaking agent."""

    @functools.wraps(original)
    def execute_code_blocks(self: Any, code_blocks: list[Any]) -> Any:
        def run() -> Any:
            result = original(self, code_blocks)
            if getattr(result, "exit_code", 0) != 0:
                raise common.Unsuccessful(result)
            return result

        return common.tool_sync("execute_code_blocks", run, agent=common.agent_name(FALLBACK_AGENT))

    return execute_code_blocks


def wrap_generate_reply(original: Callable[..., Any]) -> Callable[..., Any]:
    """``generate_reply`` with this agent recorded as the speaker while it runs."""

    @functools.wraps(original)
    def generate_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = common.speaker.set(getattr(self, "name", None))
        try:
            return original(self, *args, **kwargs)
        finally:
            common.speaker.reset(token)

    return generate_reply


def wrap_a_generate_reply(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``a_generate_reply`` with this agent recorded as the speaker while it runs."""

    @functools.wraps(original)
    async def a_generate_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = common.speaker.set(getattr(self, "name", None))
        try:
            return await original(self, *args, **kwargs)
        finally:
            common.speaker.reset(token)

    return a_generate_reply


@dataclass(frozen=True, slots=True)
class AutoGenAdapter:
    """The AutoGen classic adapter: LLM calls, function calls and code execution as syscalls."""

    name: str = "autogen"
    framework: str = "autogen"

    def targets(self) -> list[PatchTarget]:
        """The patched attributes (ag2 is imported by the patcher before this is called)."""
        return [
            PatchTarget("autogen.oai.client.OpenAIWrapper.create", wrap_create),
            PatchTarget(f"{_AGENT}.execute_function", wrap_execute_function),
            PatchTarget(f"{_AGENT}.a_execute_function", wrap_a_execute_function),
            PatchTarget(f"{_AGENT}.run_code", wrap_run_code),
            PatchTarget(f"{_AGENT}.generate_reply", wrap_generate_reply),
            PatchTarget(f"{_AGENT}.a_generate_reply", wrap_a_generate_reply),
            PatchTarget(
                "autogen.coding.local_commandline_code_executor.LocalCommandLineCodeExecutor.execute_code_blocks",
                wrap_executor,
            ),
        ]


def make_adapter() -> AutoGenAdapter:
    """The adapter registered as ``autogen``."""
    return AutoGenAdapter()
