"""A real OpenAI-compatible HTTP server on loopback that misbehaves on a seeded schedule.

It speaks enough HTTP/1.1 (keep-alive, chunked server-sent events) for the ``openai`` SDK and
``httpx`` to talk to it over a real socket, so the ``openai`` backend's own error translation and
retry logic run exactly as against vLLM: nothing is mocked on the client side.

The answer to a request is deterministic: ``"t0 t1 ... t{n-1}"`` for ``max_tokens = n`` (the same
text as the ``sim`` backend), one token per chunk, then a usage chunk and ``[DONE]``. A request
whose last message is an assistant message continues that answer (the backend's text-snapshot
resume), starting at the token after the ones it holds.

Faults are drawn per call from the plan with the request's last user message as the key; a
"persistent" fault (a fraction of them, also seeded) repeats on every retry of the same slice, the
others hit the first attempt only, as a transient overload would. Every request is recorded
(``records``), so a test can count retries and check that no slice was requested again after
some of its output had been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aios.chaos.faults import LLM_CALL_FAULTS, Fault, FaultLog, FaultPlan
from aios.errors import ConfigError

SALT = "http"
#: The faults this server injects.
HTTP_FAULTS = LLM_CALL_FAULTS
_MAX_BODY = 16 << 20
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(slots=True)
class Attempt:
    """One request the server received for a call: which slice, what it did, how much it sent."""

    #: Tokens the client already had (0 for a first slice; > 0 for a resumed one).
    offset: int
    fault: str | None
    #: Content chunks written to the socket before the response ended or was cut.
    chunks_sent: int = 0
    outcome: str = "pending"


@dataclass(slots=True)
class _Call:
    label: str
    offset: int
    max_tokens: int
    prompt_tokens: int
    stream: bool


@dataclass(slots=True)
class StubStats:
    """Totals of what the server did."""

    requests: int = 0
    completed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class ChaosLLMServer:
    """``async with ChaosLLMServer(plan=...) as srv:``; point an ``openai`` backend at ``srv.base_url``."""

    def __init__(
        self,
        *,
        plan: FaultPlan | None = None,
        log: FaultLog | None = None,
        model: str = "chaos-stub",
        host: str = "127.0.0.1",
        port: int = 0,
        token_delay: float = 0.0,
        spike_s: float = 0.2,
        persistent: float = 0.3,
        retry_after_ms: int = 20,
        keep_records: bool = True,
    ):
        if not 0.0 <= persistent <= 1.0:
            raise ConfigError("persistent must be a fraction in [0, 1]", field="persistent")
        if token_delay < 0 or spike_s < 0 or retry_after_ms < 0:
            raise ConfigError("delays must be >= 0", field="token_delay")
        self.plan = (plan or FaultPlan()).only(HTTP_FAULTS)
        self.log = log if log is not None else FaultLog()
        self.model = model
        self.host = host
        self.port = port
        self.token_delay = token_delay
        self.spike_s = spike_s
        self.persistent = persistent
        self.retry_after_ms = retry_after_ms
        self.keep_records = keep_records
        #: label -> every request received for it, in arrival order.
        self.records: dict[str, list[Attempt]] = {}
        self.stats = StubStats()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = asyncio.Event()

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` once started."""
        if self._server is None:
            raise ConfigError("the stub server is not started", field="base_url")
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> ChaosLLMServer:
        """Listen on ``host:port`` (port 0: a free one, read back into ``port``)."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and cut every open connection (hanging responses included)."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def __aenter__(self) -> ChaosLLMServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def retries(self) -> int:
        """Requests that repeated a slice already asked for (same call, same offset)."""
        total = 0
        for attempts in self.records.values():
            seen: set[int] = set()
            for a in attempts:
                total += a.offset in seen
                seen.add(a.offset)
        return total

    def retries_by_cause(self) -> dict[str, int]:
        """Retries counted by what the server did to the attempt before (``"429"``, ``"hung"``...)."""
        causes: dict[str, int] = {}
        for attempts in self.records.values():
            last: dict[int, Attempt] = {}
            for a in attempts:
                prev = last.get(a.offset)
                if prev is not None:
                    causes[prev.outcome] = causes.get(prev.outcome, 0) + 1
                last[a.offset] = a
        return dict(sorted(causes.items()))

    def retried_after_output(self) -> list[str]:
        """Calls whose slice was requested again after output of that slice had been sent (must be [])."""
        bad = []
        for label, attempts in self.records.items():
            sent: set[int] = set()
            for a in attempts:
                if a.offset in sent:
                    bad.append(label)
                    break
                if a.chunks_sent > 0:
                    sent.add(a.offset)
        return bad

    # -- HTTP -----------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._writers.add(writer)
        try:
            while not self._closing.is_set():
                request = await _read_request(reader)
                if request is None:
                    break
                method, path, body = request
                keep = await self._dispatch(method, path, body, reader, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent garbage: this connection is done
        finally:
            self._conns.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _dispatch(
        self, method: str, path: str, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must not be reused."""
        if method == "GET" and path.rstrip("/").endswith("/models"):
            data = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "chaos"}]}
            await _send_json(writer, 200, data)
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await _send_json(writer, 404, _error(f"no route {method} {path}", "not_found"))
            return True
        if body is _TOO_LARGE:
            await _send_json(writer, 413, _error("request body too large", "invalid_request_error"))
            return False
        try:
            call = _parse_call(body)
        except ValueError as exc:
            await _send_json(writer, 400, _error(str(exc), "invalid_request_error", param="messages"))
            return True
        return await self._complete(call, reader, writer)

    async def _complete(
        self, call: _Call, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        attempts = self.records.setdefault(call.label, []) if self.keep_records else []
        first_try = not any(a.offset == call.offset for a in attempts)
        fault = self.plan.decide(call.label, salt=SALT)
        persistent = self.plan.uniform(call.label, salt=SALT + "-persist") < self.persistent
        end = call.offset + call.max_tokens
        at = 1 + int(self.plan.uniform(call.label, salt=SALT) * max(1, end - 1))
        # Before-output faults hit first slices only, on the first try unless persistent.
        early = fault is not None and fault is not Fault.DROP_DURING
        if early and (call.offset > 0 or not (first_try or persistent)):
            fault = None
        if fault is Fault.DROP_DURING and not call.offset < at < end:
            fault = None
        if fault is Fault.MALFORMED and self.plan.uniform(call.label, salt="malformed-where") < 0.5:
            at = 0  # bad JSON before any content
        attempt = Attempt(offset=call.offset, fault=fault.value if fault else None)
        attempts.append(attempt)
        self.stats.requests += 1
        try:
            keep = await self._respond(call, fault, at, attempt, reader, writer)
        finally:
            # Only what really happened counts: a drop planned after the point where the client
            # cut its slice never took place.
            if attempt.fault is not None and attempt.outcome not in ("ok-unrealized", "pending"):
                self.log.record("http", Fault(attempt.fault), call.label)
        self.stats.by_outcome[attempt.outcome] = self.stats.by_outcome.get(attempt.outcome, 0) + 1
        return keep

    async def _respond(
        self,
        call: _Call,
        fault: Fault | None,
        at: int,
        attempt: Attempt,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        retry = {"retry-after-ms": str(self.retry_after_ms)}
        if fault is Fault.RATE_LIMIT:
            attempt.outcome = "429"
            await _send_json(writer, 429, _error("chaos: rate limited", "rate_limit_error"), retry)
            return True
        if fault is Fault.SERVER_ERROR or fault is Fault.UNAVAILABLE:
            status = 500 if fault is Fault.SERVER_ERROR else 503
            attempt.outcome = str(status)
            await _send_json(writer, status, _error(f"chaos: HTTP {status}", "server_error"), retry)
            return True
        if fault is Fault.CRASH:
            # A crashed server often answers with an HTML page, not the JSON error body clients expect.
            attempt.outcome = "500-html"
            page = b"<html><body><h1>500 Internal Server Error</h1>chaos</body></html>"
            await _send(writer, 500, page, {"content-type": "text/html"})
            return True
        if fault is Fault.DROP_BEFORE:
            attempt.outcome = "dropped-before"
            return False
        if fault is Fault.HANG:
            attempt.outcome = "hung"
            await self._until_gone(reader)  # the client's timeout (or our close) ends this
            return False
        if fault is Fault.LATENCY:
            await asyncio.sleep(self.spike_s)
        if not call.stream:
            return await self._respond_whole(call, attempt, writer)
        return await self._stream(call, fault, at, attempt, writer)

    async def _until_gone(self, reader: asyncio.StreamReader) -> None:
        """Wait until the client closes the connection or the server closes."""
        closing = asyncio.ensure_future(self._closing.wait())
        eof = asyncio.ensure_future(reader.read())
        try:
            await asyncio.wait({closing, eof}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (closing, eof):
                f.cancel()
            await asyncio.gather(closing, eof, return_exceptions=True)

    async def _respond_whole(self, call: _Call, attempt: Attempt, writer: asyncio.StreamWriter) -> bool:
        end = call.offset + call.max_tokens
        text = "".join(_piece(i, end) for i in range(call.offset, end))
        data = {
            "id": "chatcmpl-chaos",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            ],
            "usage": _usage(call, call.max_tokens),
        }
        attempt.outcome = "ok"
        attempt.chunks_sent = call.max_tokens
        self.stats.completed += 1
        await _send_json(writer, 200, data)
        return True

    async def _stream(
        self, call: _Call, fault: Fault | None, at: int, attempt: Attempt, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        end = call.offset + call.max_tokens
        for i in range(call.offset, end):
            if i == at and fault is Fault.DROP_DURING:
                attempt.outcome = "dropped-during"
                await writer.drain()
                return False
            if (i == at and fault is Fault.MALFORMED) or (at == 0 and fault is Fault.MALFORMED):
                attempt.outcome = "malformed"
                _chunk(writer, b'data: {"choices": [{"delta": {"content": "t\n\n')
                _chunk(writer, b"")
                await writer.drain()
                return True
            delta: dict[str, Any] = {"content": _piece(i, end)}
            if i == call.offset:
                delta["role"] = "assistant"
            _event(writer, self._chunk_json([{"index": 0, "delta": delta, "finish_reason": None}]))
            attempt.chunks_sent += 1
            if self.token_delay > 0:
                await writer.drain()
                await asyncio.sleep(self.token_delay)
            elif (i - call.offset) % 16 == 15:
                await writer.drain()
        _event(writer, self._chunk_json([{"index": 0, "delta": {}, "finish_reason": "length"}]))
        _event(writer, self._chunk_json([], usage=_usage(call, call.max_tokens)))
        _chunk(writer, b"data: [DONE]\n\n")
        _chunk(writer, b"")
        attempt.outcome = "ok" if fault in (None, Fault.LATENCY) else "ok-unrealized"
        self.stats.completed += 1
        await writer.drain()
        return True

    def _chunk_json(
        self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-chaos",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            data["usage"] = usage
        return data


_TOO_LARGE = b"\x00too-large"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    """(method, path, body) of the next request on the connection; None at a clean EOF."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("bad request line")
    method, path, _ = parts
    length = 0
    chunked = False
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        raise ValueError("chunked request bodies are not supported")
    if length > _MAX_BODY:
        return method, path, _TOO_LARGE
    body = await reader.readexactly(length) if length else b""
    return method, path, body


def _parse_call(body: bytes) -> _Call:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list) or not data["messages"]:
        raise ValueError("messages must be a non-empty list")
    messages = data["messages"]
    if not all(isinstance(m, dict) for m in messages):
        raise ValueError("every message must be an object")
    label = ""
    for m in reversed(messages):
        if m.get("role") == "user":
            label = _text(m.get("content"))
            break
    offset = 0
    if messages[-1].get("role") == "assistant":
        offset = len(_text(messages[-1].get("content")).split())
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens", 16))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError("max_tokens must be a positive integer")
    prompt = sum(len(_text(m.get("content")).split()) + 4 for m in messages)
    return _Call(label, offset, max_tokens, prompt, bool(data.get("stream", False)))


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _piece(i: int, end: int) -> str:
    return f"t{i} " if i < end - 1 else f"t{i}"


def _usage(call: _Call, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": call.prompt_tokens + completion,
    }


def _error(message: str, kind: str, *, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _event(writer: asyncio.StreamWriter, data: dict[str, Any]) -> None:
    _chunk(writer, b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")


async def _send_json(
    writer: asyncio.StreamWriter, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    await _send(
        writer, status, json.dumps(data).encode(), {"content-type": "application/json", **(headers or {})}
    )


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]) -> None:
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + body)
    await writer.drain()
