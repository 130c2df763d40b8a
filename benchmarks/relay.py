"""A loopback OpenAI-compatible endpoint over one agent's runtime: the "without kernel" wire.

A third-party framework talks to its model through its own OpenAI client. Without the kernel,
the harness points that client at this relay: every ``POST /v1/chat/completions`` becomes one
``runtime.llm_chat(...)`` call (``DirectLLM``: the backend called directly, no scheduler), counted
by the runtime exactly as the native agents' calls are. So "with vs without" still differs only
in whether the framework's calls reach the kernel (through ``aios.patch``) or the backend.

The relay is small on purpose: HTTP/1.1 on ``asyncio`` streams (no web framework, so it runs in
every framework environment), keep-alive for JSON answers, SSE for ``stream: true`` (the answer is
sent as one content chunk and one tool-call chunk per call, then ``[DONE]``). A request the
runtime rejects gets an OpenAI-shaped error object with the status code of its kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aios.adapters.react_reflexion import AgentRuntime
from aios.errors import AIOSError, InvalidRequestError
from aios.types import LLMResult

#: Largest request body accepted (a long multi-turn conversation fits easily).
MAX_BODY = 8 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class RelayEndpoint:
    """Where to point an OpenAI client: ``base_url`` ends in ``/v1``; any api key is accepted."""

    base_url: str
    model: str
    api_key: str = "aios-relay"


def _params(body: dict[str, Any]) -> dict[str, Any]:
    """The ``llm_chat`` keyword arguments of an OpenAI chat-completions body."""
    if not isinstance(body.get("messages"), list):
        raise InvalidRequestError("the body needs a 'messages' list", field="messages")
    params: dict[str, Any] = {}
    for name in ("tools", "tool_choice", "response_format", "temperature"):
        if body.get(name) is not None:
            params[name] = body[name]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        params["stop"] = [stop] if isinstance(stop, str) else stop
    if not params.get("tools"):
        params.pop("tools", None)
        params.pop("tool_choice", None)
    return params


def _finish(result: LLMResult) -> str:
    return "tool_calls" if result.tool_calls else result.finish_reason


def completion(result: LLMResult, model: str) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object of ``result``."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": result.to_message(), "finish_reason": _finish(result), "logprobs": None}
        ],
        "usage": result.usage.to_openai(),
    }


def chunks(result: LLMResult, model: str, *, include_usage: bool) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream ``result``."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}  # fmt: skip
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if result.text:
        deltas.append({"content": result.text})
    for i, tc in enumerate(result.tool_calls):
        call = {"index": i, **tc.to_openai()}
        deltas.append({"tool_calls": [call]})
    out = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(result)}]})
    if include_usage:
        out.append({**base, "choices": [], "usage": result.usage.to_openai()})
    return out


def _status(exc: AIOSError) -> int:
    return 400 if isinstance(exc, InvalidRequestError) else 500


def _error(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": field, "code": None}}


class _Relay:
    def __init__(self, runtime: AgentRuntime, agent: str, model: str):
        self.runtime, self.agent, self.model = runtime, agent, model
        # Open client connections: closed when the relay stops (keep-alive clients never close them).
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away; nothing is owed to it
        finally:
            self.writers.discard(writer)
            if task is not None:
                self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for another."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            await self._json(
                writer, 413, _error(413, f"body of {length} bytes is over {MAX_BODY}"), close=True
            )
            return False
        raw = await reader.readexactly(length) if length else b""
        keep = headers.get("connection", "").lower() != "close"
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path.endswith("/models"):
            models = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "aios"}]}
            await self._json(writer, 200, models, close=not keep)
            return keep
        if method != "POST" or not path.endswith("/chat/completions"):
            await self._json(writer, 404, _error(404, f"no route {method} {path}", "path"), close=not keep)
            return keep
        body: dict[str, Any]
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise InvalidRequestError("the body must be a JSON object", field="body")
            params = _params(body)
            result = await self.runtime.llm_chat(body["messages"], agent=self.agent, **params)
        except json.JSONDecodeError as exc:
            await self._json(writer, 400, _error(400, f"body is not JSON: {exc}", "body"), close=not keep)
            return keep
        except AIOSError as exc:
            status = _status(exc)
            await self._json(
                writer, status, _error(status, str(exc), getattr(exc, "field", None)), close=not keep
            )
            return keep
        except Exception as exc:  # a bug must still answer the caller, never leave it hanging
            message = f"relay failed: {type(exc).__name__}: {exc}"
            await self._json(writer, 500, _error(500, message), close=True)
            return False
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            await self._sse(writer, chunks(result, self.model, include_usage=bool(opts.get("include_usage"))))
            return False
        await self._json(writer, 200, completion(result, self.model), close=not keep)
        return keep

    async def _json(
        self, writer: asyncio.StreamWriter, status: int, body: dict[str, Any], *, close: bool
    ) -> None:
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()

    async def _sse(self, writer: asyncio.StreamWriter, events: list[dict[str, Any]]) -> None:
        # Without Content-Length the end of the stream is the end of the connection.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Connection: close\r\n\r\n")  # fmt: skip
        for event in events:
            writer.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()


@contextlib.asynccontextmanager
async def relay(
    runtime: AgentRuntime, agent: str, *, model: str = "aios-direct"
) -> AsyncIterator[RelayEndpoint]:
    """Serve ``runtime`` to ``agent``'s OpenAI client on a free loopback port while the block runs."""
    handler = _Relay(runtime, agent, model)
    server = await asyncio.start_server(handler.serve, "127.0.0.1", 0, limit=MAX_BODY)
    port = server.sockets[0].getsockname()[1]
    try:
        yield RelayEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model=model)
    finally:
        server.close()
        for writer in list(handler.writers):
            writer.close()
        # Closing a connection ends its handler; wait for them so none outlives the relay.
        if handler.tasks:
            _, pending = await asyncio.wait(list(handler.tasks), timeout=5.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await server.wait_closed()
