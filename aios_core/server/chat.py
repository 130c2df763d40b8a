"""The OpenAI-compatible surface: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Every completion is one LLM syscall of the acting agent, scheduled by the kernel like any other.
Shapes follow the OpenAI Chat Completions API (non-streaming and SSE streaming, tool calls,
usage, ``stream_options.include_usage``). Differences, on purpose:

- ``temperature`` defaults to the kernel's 0 (greedy), not OpenAI's 1.
- ``max_tokens`` (or ``max_completion_tokens``) defaults to ``server.default_max_tokens``.
- ``n`` must be 1; sampling knobs the kernel does not model (``top_p``, penalties, ``user``…) are
  accepted and ignored.
- ``priority`` (body) or ``X-AIOS-Priority`` (header, wins) sets the syscall's priority (lower is
  more urgent); ``X-AIOS-Timeout`` its deadline in seconds.
- Responses carry an extra ``aios`` object (syscall id, agent, core, text segments per slice,
  recomputed tokens); OpenAI clients ignore it, the remote SDK reads it.
- A streamed call that fails sends ``event: error`` with an OpenAI error object and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from aios.errors import AIOSError, InvalidRequestError
from aios.kernel import Kernel
from aios.server.settings import ServerConfig
from aios.server.state import (
    PRIORITY_HEADER,
    TIMEOUT_HEADER,
    Caller,
    ServerState,
    header_int,
    json_object,
    timeout_of,
)
from aios.syscalls import Syscall
from aios.types import LLMRequest, LLMResult
from aios.wire import error_body


@dataclass(slots=True)
class ChatCall:
    """A parsed chat request: the LLM request plus how to answer it."""

    request: LLMRequest
    stream: bool
    include_usage: bool
    priority: int | None


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{name} must be an integer", field=name)
    return value


def _opt(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is not None and ((isinstance(value, bool) and kind is not bool) or not isinstance(value, kind)):
        raise InvalidRequestError(f"{name} must be {what}", field=name)
    return value


def parse_chat(raw: object, cfg: ServerConfig) -> ChatCall:
    """An OpenAI chat-completions body as a ``ChatCall``; 400 naming the first bad field."""
    body = json_object(raw)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequestError("messages must be a list of message objects", field="messages")
    if len(messages) > cfg.max_messages:
        raise InvalidRequestError(
            f"{len(messages)} messages; at most {cfg.max_messages} are accepted", field="messages"
        )
    n = _opt_int(body, "n")
    if n is not None and n != 1:
        raise InvalidRequestError("only n=1 is supported", field="n")
    max_tokens = _opt_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _opt_int(body, "max_tokens")
    if max_tokens is None:
        max_tokens = cfg.default_max_tokens
    if not 1 <= max_tokens <= cfg.max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens must be in [1, {cfg.max_tokens_limit}], got {max_tokens}", field="max_tokens"
        )
    temperature = _opt(body, "temperature", (int, float), "a number")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    stream = bool(_opt(body, "stream", bool, "true or false"))
    options = _opt(body, "stream_options", dict, "an object")
    include_usage = False
    if options is not None:
        include_usage = _opt(options, "include_usage", bool, "true or false") is True
    tools = _opt(body, "tools", list, "a list of tools")
    request = LLMRequest(
        messages=messages,
        model=_opt(body, "model", str, "a string"),
        tools=tools or None,
        tool_choice=body.get("tool_choice"),
        temperature=0.0 if temperature is None else temperature,
        max_tokens=max_tokens,
        stop=stop,
        response_format=_opt(body, "response_format", dict, "an object"),
        stream=stream,
        seed=_opt_int(body, "seed"),
    )
    if request.tool_choice is not None and not tools and request.tool_choice in ("none", "auto"):
        request.tool_choice = None  # OpenAI accepts these without tools; the kernel need not see them
    request.validate()
    return ChatCall(request, stream, include_usage, _opt_int(body, "priority"))


def _extension(sc: Syscall, result: LLMResult | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "syscall": sc.id,
        "agent": sc.agent,
        "core": sc.core,
        "preemptions": sc.preemptions,
    }
    if result is not None:
        out["backend"] = result.backend
        out["segments"] = list(result.segments)
        out["recomputed_tokens"] = result.usage.recomputed_tokens
    return out


def completion_json(sc: Syscall, call: ChatCall, result: LLMResult, created: int) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text or (None if result.tool_calls else ""),
    }
    if result.tool_calls:
        message["tool_calls"] = [tc.to_openai() for tc in result.tool_calls]
    return {
        "id": f"chatcmpl-{sc.id}",
        "object": "chat.completion",
        "created": created,
        "model": result.model or call.request.model or "",
        "choices": [
            {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
        ],
        "usage": result.usage.to_openai(),
        "system_fingerprint": None,
        "aios": _extension(sc, result),
    }


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _ChatStream(StreamingResponse):
    """An SSE response that cancels its syscall if the client leaves, and counts itself done."""

    counts_itself = True

    def __init__(self, state: ServerState, sc: Syscall, events: AsyncIterator[bytes]):
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._state = state
        self._sc = sc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._sc.status.final:
                self._state.kernel.dispatcher.cancel(self._sc)
            self._state.in_flight -= 1


async def _events(
    sc: Syscall, call: ChatCall, queue: asyncio.Queue[str | None], created: int
) -> AsyncIterator[bytes]:
    model = call.request.model or ""
    usage_field: dict[str, Any] = {"usage": None} if call.include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None, *, model: str = model, **extra: Any) -> bytes:
        return _sse(
            {
                "id": f"chatcmpl-{sc.id}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **usage_field,
                **extra,
            }
        )

    yield chunk({"role": "assistant", "content": ""})
    while (piece := await queue.get()) is not None:
        if piece:
            yield chunk({"content": piece})
    error = sc.future.exception()
    if error is not None:
        assert isinstance(error, AIOSError)
        yield _sse(error_body(error), event="error")
        return
    result: LLMResult = sc.future.result()
    model = result.model or model
    if result.tool_calls:
        calls = [{"index": i, **tc.to_openai()} for i, tc in enumerate(result.tool_calls)]
        yield chunk({"tool_calls": calls}, model=model)
    yield chunk({}, result.finish_reason, model=model, aios=_extension(sc, result))
    if call.include_usage:
        # As OpenAI does: one last chunk with no choices and the usage of the whole call.
        yield _sse(
            {
                "id": f"chatcmpl-{sc.id}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": result.usage.to_openai(),
            }
        )
    yield b"data: [DONE]\n\n"


def submit(kernel: Kernel, caller: Caller, request: Request, call: ChatCall, on_delta: Any = None) -> Syscall:
    """Queue the LLM syscall of ``call`` (429 when the kernel's queue is full)."""
    priority = header_int(request, PRIORITY_HEADER)
    if priority is None:
        priority = call.priority or 0
    priority = caller.principal.priority(priority)
    timeout = timeout_of(request.headers.get(TIMEOUT_HEADER), "X-AIOS-Timeout")
    return kernel.submit_llm(
        caller.agent, call.request, priority=priority, timeout=timeout, on_delta=on_delta
    )


async def chat_completions(state: ServerState, caller: Caller, request: Request, raw: object) -> Response:
    """Answer one chat-completions request (JSON or SSE)."""
    call = parse_chat(raw, state.config)
    created = int(time.time())
    kernel = state.kernel
    if not call.stream:
        sc = submit(kernel, caller, request, call)
        result: LLMResult = await state.guard(request, kernel.wait(sc))
        return JSONResponse(completion_json(sc, call, result, created))
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    sc = submit(kernel, caller, request, call, on_delta=queue.put_nowait)
    sc.future.add_done_callback(lambda _: queue.put_nowait(None))
    return _ChatStream(state, sc, _events(sc, call, queue, created))


def models_json(kernel: Kernel) -> dict[str, Any]:
    """``GET /v1/models``: every core by name, and every routed model name with its core."""
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "aios", "aios_core": name}
        for name in kernel.backends
    ]
    data += [
        {"id": model, "object": "model", "created": 0, "owned_by": "aios", "aios_core": core}
        for model, core in kernel.routes.items()
        if model not in kernel.backends
    ]
    return {"object": "list", "data": data, "aios_default_core": kernel.config.default_core}
