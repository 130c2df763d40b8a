"""AutoGen classic (ag2 0.x) requests to kernel requests, and kernel results to ag2's response shape.

``OpenAIWrapper.create`` hands its clients the OpenAI chat-completions parameters; this module
turns them into ``sdk.llm_chat`` arguments and turns the ``LLMResult`` back into an
``openai.types.chat.ChatCompletion`` carrying what ag2 reads afterwards: ``choices[0].message``
(``content``, ``tool_calls`` or the legacy ``function_call``), ``usage``, ``model``, ``cost`` and
``message_retrieval_function`` (the hook ``OpenAIWrapper.extract_text_or_completion_object``
calls first). The legacy ``functions``/``function_call`` API is mapped onto tools both ways.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aios.errors import InvalidRequestError
from aios.types import LLMResult, Message

#: Message fields the kernel understands; ag2's own bookkeeping fields are dropped.
_KEEP = ("role", "content", "name", "tool_calls", "tool_call_id")


@dataclass(slots=True)
class ChatCall:
    """One ag2 request in the kernel's terms."""

    messages: list[Message]
    model: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The request used the deprecated ``functions`` API: answer with ``function_call``.
    legacy_functions: bool = False
    stream: bool = False


def chat_call(params: Mapping[str, Any]) -> ChatCall:
    """The kernel request for the merged create parameters ``params`` of ``OpenAIWrapper.create``."""
    prompt = params.get("prompt")
    raw = params.get("messages")
    if raw is None and isinstance(prompt, str):
        raw = [{"role": "user", "content": prompt}]
    if raw is None:
        raise InvalidRequestError("create() needs messages (or a prompt)", field="messages")
    legacy = bool(params.get("functions")) and not params.get("tools")
    kwargs: dict[str, Any] = {}
    tools = params.get("tools") or None
    choice = params.get("tool_choice")
    if legacy:
        tools = [{"type": "function", "function": dict(f)} for f in params["functions"]]
        choice = _function_call_choice(params.get("function_call"))
    if tools:
        kwargs["tools"] = [dict(t) for t in tools]
        if choice is not None:
            kwargs["tool_choice"] = choice
    temperature = params.get("temperature")
    if temperature is not None:
        kwargs["temperature"] = temperature
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    stop = params.get("stop")
    if stop is not None:
        kwargs["stop"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = response_format(params.get("response_format"))
    if fmt is not None:
        kwargs["response_format"] = fmt
    model = params.get("model")
    return ChatCall(
        messages=to_kernel_messages(raw),
        model=model if isinstance(model, str) and model else None,
        kwargs=kwargs,
        legacy_functions=legacy,
        stream=bool(params.get("stream")),
    )


def _function_call_choice(value: Any) -> str | dict[str, Any] | None:
    """The legacy ``function_call`` parameter ("auto", "none" or {"name": ...}) as a tool_choice."""
    if value is None or value in ("auto", "none"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    raise InvalidRequestError(
        f"function_call must be 'auto', 'none' or {{'name': ...}}, got {value!r}", field="function_call"
    )


def response_format(value: Any) -> dict[str, Any] | None:
    """A response_format as the kernel takes it; a pydantic model class becomes its JSON schema."""
    if value is None or isinstance(value, Mapping):
        return dict(value) if value is not None else None
    schema = getattr(value, "model_json_schema", None)
    if isinstance(value, type) and callable(schema):
        return {"type": "json_schema", "json_schema": {"name": value.__name__, "schema": schema()}}
    raise InvalidRequestError(
        f"response_format must be a dict or a pydantic model class, got {type(value).__name__}",
        field="response_format",
    )


def to_kernel_messages(messages: Sequence[Any]) -> list[Message]:
    """ag2's message list in the kernel's OpenAI shape.

    Legacy ``function_call`` turns become ``tool_calls`` and ``role: function`` results become
    ``role: tool`` answers to them; tool calls lacking an id or type (ag2 strips them for
    Mistral) get them back; non-text tool results are written as JSON.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidRequestError("messages must be a list of message dicts", field="messages")
    out: list[Message] = []
    open_calls: list[str] = []
    for i, raw in enumerate(messages):
        if not isinstance(raw, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be a dict", field=f"messages[{i}]")
        msg: Message = {k: raw[k] for k in _KEEP if raw.get(k) is not None}
        role = raw.get("role")
        calls = raw.get("tool_calls")
        if calls:
            msg["tool_calls"] = [_tool_call(c, f"call_{i}_{j}") for j, c in enumerate(calls)]
            open_calls.extend(c["id"] for c in msg["tool_calls"])
        elif isinstance(raw.get("function_call"), Mapping):
            call = _tool_call({"function": raw["function_call"]}, f"call_{i}")
            msg["tool_calls"] = [call]
            open_calls.append(call["id"])
        if role == "function":
            msg["role"] = "tool"
            msg.setdefault("tool_call_id", open_calls.pop(0) if open_calls else f"call_{i}")
        elif role == "tool" and "tool_call_id" in msg and msg["tool_call_id"] in open_calls:
            open_calls.remove(msg["tool_call_id"])
        msg["content"] = _content(raw.get("content"), has_calls=bool(msg.get("tool_calls")))
        out.append(msg)
    return out


def _tool_call(call: Any, default_id: str) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping):
        raise InvalidRequestError("a tool call must carry a 'function' object", field="tool_calls")
    args = fn.get("arguments", "{}")
    return {
        "id": call.get("id") or default_id,
        "type": call.get("type") or "function",
        "function": {
            "name": fn.get("name", ""),
            "arguments": args if isinstance(args, str) else json.dumps(args),
        },
    }


def _content(content: Any, *, has_calls: bool) -> Any:
    if content is None:
        return None if has_calls else ""
    if isinstance(content, str | list):
        return content
    try:
        return json.dumps(content)
    except (TypeError, ValueError):
        return str(content)


def to_chat_completion(result: LLMResult, *, model: str | None, legacy_functions: bool) -> Any:
    """The ``ChatCompletion`` ag2 expects for ``result`` (``cost`` and retrieval are set by the caller)."""
    chat_completion = importlib.import_module("openai.types.chat").ChatCompletion
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None}
    finish: str = result.finish_reason
    if result.tool_calls and legacy_functions:
        first = result.tool_calls[0]
        message["function_call"] = {"name": first.name, "arguments": first.arguments}
        finish = "function_call"
    elif result.tool_calls:
        message["tool_calls"] = [tc.to_openai() for tc in result.tool_calls]
        finish = "tool_calls"
    elif not result.text:
        message["content"] = ""
    usage = result.usage
    return chat_completion.model_validate(
        {
            "id": f"chatcmpl-aios-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": result.model or model or "",
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None, "message": message}],
            "usage": usage.to_openai(),
        }
    )


def message_retrieval(response: Any) -> list[Any]:
    """What ag2's ``OpenAIClient.message_retrieval`` returns: the message object for calls, else its text."""
    return [
        choice.message
        if choice.message.tool_calls is not None or choice.message.function_call is not None
        else (choice.message.content or "")
        for choice in response.choices
    ]


def usage_record(response: Any, cost: float) -> dict[str, Any]:
    """The usage entry ``OpenAIWrapper`` folds into its usage summaries."""
    usage = response.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": cost,
        "model": response.model,
    }
