"""Open Interpreter's ``llm.completions`` hook served by the kernel.

Open Interpreter calls ``interpreter.llm.completions(**params)`` with litellm-style parameters
(``model``, ``messages``, ``stream=True``, ``tools`` in function-calling mode, ``max_tokens``...)
and iterates the result as litellm streaming chunks, reading them both as dicts
(``chunk["choices"][0]["delta"]``) and as attributes (``delta["tool_calls"][0].function.name``).
This module turns the parameters into one LLM syscall and its ``LLMResult`` into real litellm
``ModelResponseStream`` chunks, so both reading styles keep working.

Tool choice: Open Interpreter offers one ``execute`` tool and lets the model choose. Under the
default policy (``first``) the adapter forces ``execute`` when the conversation ends with a user
message, i.e. on the first model turn of each request; after a code result (a ``tool`` message)
the model chooses freely, so the respond loop still ends with a text answer. This makes a small
local model, which answers "auto" in plain text, still run code. Set the environment variable
``AIOS_OPEN_INTERPRETER_TOOL_CHOICE=auto`` to pass Open Interpreter's choice through unchanged.
A ``tool_choice`` given explicitly in the parameters always wins.
"""

from __future__ import annotations

import importlib
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from aios import sdk
from aios.errors import ConfigError, InvalidRequestError
from aios.types import LLMResult, Message

from .identity import agent_for

EXECUTE_TOOL = "execute"
POLICY_ENV = "AIOS_OPEN_INTERPRETER_TOOL_CHOICE"
POLICIES = ("first", "auto")

#: Message keys the kernel understands; Open Interpreter adds none we need beyond these.
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def tool_choice_policy(environ: Mapping[str, str] = os.environ) -> str:
    """The forcing policy from ``AIOS_OPEN_INTERPRETER_TOOL_CHOICE`` (``first`` when unset)."""
    value = environ.get(POLICY_ENV, "first").strip().lower() or "first"
    if value not in POLICIES:
        raise ConfigError(f"{POLICY_ENV} must be one of {list(POLICIES)}, got {value!r}", field=POLICY_ENV)
    return value


def to_kernel_messages(messages: object) -> list[Message]:
    """Open Interpreter's OpenAI-shaped messages as plain kernel messages (unknown keys dropped)."""
    if not isinstance(messages, list | tuple) or not messages:
        raise InvalidRequestError("messages must be a non-empty list", field="messages")
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be an object", field=f"messages[{i}]")
        plain: Message = {k: msg[k] for k in _MESSAGE_KEYS if msg.get(k) is not None}
        plain.setdefault("content", None)
        if plain.get("tool_calls"):
            plain["tool_calls"] = [
                _plain_tool_call(tc, f"messages[{i}].tool_calls[{j}]")
                for j, tc in enumerate(plain["tool_calls"])
            ]
        out.append(plain)
    return out


def _plain_tool_call(tc: object, where: str) -> dict[str, Any]:
    # Items may be dicts or litellm/openai objects; read both the same way.
    def get(obj: object, key: str) -> Any:
        return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)

    fn = get(tc, "function")
    name, arguments = get(fn, "name"), get(fn, "arguments")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{where}.function.name must be a non-empty string", field=where)
    return {
        "id": str(get(tc, "id") or ""),
        "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else "{}"},
    }


def _offers(tools: object, name: str) -> bool:
    if not isinstance(tools, list):
        return False
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and fn.get("name") == name:
            return True
    return False


def choose_tool(params: Mapping[str, Any], messages: list[Message], policy: str) -> Any:
    """The ``tool_choice`` to send: the caller's, or ``execute`` forced on a fresh user turn."""
    explicit = params.get("tool_choice")
    if explicit is not None:
        return explicit
    fresh_turn = messages[-1].get("role") == "user"
    if policy == "first" and fresh_turn and _offers(params.get("tools"), EXECUTE_TOOL):
        return {"type": "function", "function": {"name": EXECUTE_TOOL}}
    return None


def request_kwargs(params: Mapping[str, Any], *, policy: str) -> dict[str, Any]:
    """Keyword arguments for ``sdk.llm_chat_sync`` from litellm-style ``params``.

    Transport settings (``api_key``, ``api_base``, ``num_retries``...) mean nothing to the kernel
    and are dropped; the kernel's routing table decides where ``model`` goes.
    """
    messages = to_kernel_messages(params.get("messages"))
    kw: dict[str, Any] = {"messages": messages}
    model = params.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise InvalidRequestError("model must be a string", field="model")
        kw["model"] = model
    if params.get("tools") is not None:
        kw["tools"] = params["tools"]
    choice = choose_tool(params, messages, policy)
    if choice is not None:
        kw["tool_choice"] = choice
    if params.get("temperature") is not None:
        kw["temperature"] = params["temperature"]
    if params.get("max_tokens") is not None:
        kw["max_tokens"] = params["max_tokens"]
    stop = params.get("stop")
    if stop is not None:
        kw["stop"] = [stop] if isinstance(stop, str) else stop
    if params.get("response_format") is not None:
        kw["response_format"] = params["response_format"]
    return kw


def stream_chunks(result: LLMResult, *, model: str) -> Iterator[Any]:
    """``result`` as litellm ``ModelResponseStream`` chunks: text, tool calls, then the finish.

    The kernel hands back the whole answer; its text is cut into token-like pieces (see
    ``text_pieces``), each tool call comes in one chunk, and a last chunk carries the finish
    reason and usage.
    """
    types = importlib.import_module("litellm.types.utils")
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    name = result.model or model

    def chunk(delta: Any, finish: str | None = None, usage: Any = None) -> Any:
        choice = types.StreamingChoices(index=0, delta=delta, finish_reason=finish)
        extra = {} if usage is None else {"usage": usage}
        return types.ModelResponseStream(id=chunk_id, created=created, model=name, choices=[choice], **extra)

    role: str | None = "assistant"
    pieces = text_pieces(result.text)
    if not pieces and not result.tool_calls:
        pieces = [""]  # an empty answer still opens the assistant turn
    for piece in pieces:
        yield chunk(types.Delta(role=role, content=piece))
        role = None
    for index, tc in enumerate(result.tool_calls):
        call = {
            "index": index,
            "id": tc.id,
            "type": "function",
            "function": {"name": tc.name, "arguments": tc.arguments},
        }
        yield chunk(types.Delta(role=role, content=None, tool_calls=[call]))
        role = None
    usage = types.Usage(
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        total_tokens=result.usage.total_tokens,
    )
    yield chunk(types.Delta(), finish=result.finish_reason, usage=usage)


#: Token-like pieces: runs of backticks, newlines, and words with their leading spaces.
_PIECE = re.compile(r"`+|\n|[^\S\n]*[^\s`]+|[^\S\n]+")


def text_pieces(text: str) -> list[str]:
    """``text`` cut into token-like pieces (``"".join`` gives it back).

    Open Interpreter's parser of fenced code reads a stream one token at a time: it recognises
    a fence only when the backticks end a chunk, and takes the language from the chunk after
    them. Whole lines or slices in one chunk would lose the text around a fence.
    """
    return _PIECE.findall(text)


class KernelCompletions:
    """``interpreter.llm.completions`` while patched: each call is one LLM syscall of the agent.

    Returns an iterator of litellm stream chunks (the only shape Open Interpreter reads, so
    ``stream`` is accepted and ignored). The parameters are checked and the agent identity read
    when called; the syscall runs when iteration starts, on the process-default kernel, and the
    whole answer is then yielded as chunks (``sdk.llm_chat_sync`` has no streaming form).
    """

    __slots__ = ("_llm",)

    def __init__(self, llm: object):
        self._llm = llm

    def __call__(self, **params: Any) -> Iterator[Any]:
        """Start one completion; see the class docstring."""
        kw = request_kwargs(params, policy=tool_choice_policy())
        agent = agent_for(getattr(self._llm, "interpreter", None))
        return self._run(kw, agent)

    @staticmethod
    def _run(kw: dict[str, Any], agent: str) -> Iterator[Any]:
        messages = kw.pop("messages")
        result = sdk.llm_chat_sync(messages, agent=agent, **kw)
        yield from stream_chunks(result, model=kw.get("model") or "")

    def __repr__(self) -> str:
        return f"<aios kernel completions for {self._llm!r}>"
