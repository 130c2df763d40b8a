"""A loopback OpenAI-compatible **stub** server with a latency model: no model behind it.

It exists to measure the kernel, not a model: it answers ``POST /v1/chat/completions`` (streamed or
not) with ``max_tokens`` copies of the token ``" tok"`` after ``fixed_ms``, then one token every
``per_token_ms``. Every response says so (model ``stub-latency-model``, header ``x-aios-stub``),
and every benchmark output that used it carries ``StubLatency.label``.

It is a hand-written HTTP/1.1 server on asyncio streams (keep-alive, chunked SSE), not starlette
on uvicorn: measured here, a starlette stub saturates at ~120-225 requests/s on one core and then
its queueing, not the client under test, decides the latency. It runs in its own process, pinned
to one core if asked (``cpu``), so its CPU never competes with the client being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aios.benchmarks.efficiency.llama_server import ChildServer, free_port, wait_healthy
from aios.errors import ConfigError

STUB_MODEL = "stub-latency-model"
_MAX_HEADER = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class StubLatency:
    """The stub's latency model: first token after ``fixed_ms``, then ``per_token_ms`` per token."""

    fixed_ms: float = 0.0
    per_token_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.fixed_ms < 0 or self.per_token_ms < 0:
            raise ConfigError("stub latencies must be >= 0", field="stub_latency")

    def service_s(self, tokens: int) -> float:
        """Nominal seconds the stub takes for a response of ``tokens`` tokens."""
        return (self.fixed_ms + self.per_token_ms * tokens) / 1000.0

    @property
    def label(self) -> str:
        """How every output names this backend: it is a stub, not a model."""
        return (
            f"STUB loopback server (no model; latency model: {self.fixed_ms:g} ms fixed + "
            f"{self.per_token_ms:g} ms/token)"
        )


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _prompt_tokens(messages: object) -> int:
    if not isinstance(messages, list):
        return 0
    n = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        n += 4 + (len(content.split()) if isinstance(content, str) else 0)
    return n


class _Handler:
    """One connection's requests, served in turn (HTTP/1.1 keep-alive)."""

    def __init__(self, latency: StubLatency):
        self.latency = latency
        self.served = 0
        self.header = f"fixed_ms={latency.fixed_ms:g};per_token_ms={latency.per_token_ms:g}".encode()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection until the client closes it."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, _, rest = lines[0].partition(" ")
                path = rest.split(" ", 1)[0]
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    key = name.strip().lower()
                    if key == "content-length":
                        length = int(value.strip() or 0)
                    elif key == "connection" and value.strip().lower() == "close":
                        close = True
                if length > _MAX_BODY:
                    await self._plain(writer, 413, b'{"error":"body too large"}')
                    return
                body = await reader.readexactly(length) if length else b""
                await self._route(method, path, body, writer)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # a client that cut its stream: nothing to clean up
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _plain(self, writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}.get(status, "")
        writer.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"x-aios-stub: %s\r\n\r\n%s" % (status, reason.encode(), len(body), self.header, body)
        )
        await writer.drain()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path in ("/health", "/v1/health"):
            await self._plain(writer, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/v1/models":
            await self._plain(writer, 200, b'{"object":"list","data":[{"id":"%s"}]}' % STUB_MODEL.encode())
        elif method == "POST" and path == "/v1/chat/completions":
            try:
                req = json.loads(body)
                max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
                if max_tokens < 1:
                    raise ValueError("max_tokens must be >= 1")
            except (ValueError, TypeError, AttributeError) as exc:
                msg = json.dumps({"error": {"message": str(exc), "param": "max_tokens"}}).encode()
                await self._plain(writer, 400, msg)
                return
            self.served += 1
            prompt = _prompt_tokens(req.get("messages"))
            if req.get("stream"):
                usage = bool((req.get("stream_options") or {}).get("include_usage"))
                await self._stream(writer, max_tokens, prompt, usage)
            else:
                await self._complete(writer, max_tokens, prompt)
        else:
            await self._plain(writer, 404, b'{"error":"not found"}')

    async def _complete(self, writer: asyncio.StreamWriter, tokens: int, prompt: int) -> None:
        await asyncio.sleep(self.latency.service_s(tokens))
        body = json.dumps(
            {
                "id": f"stub-{self.served}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": STUB_MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " tok" * tokens},
                        "finish_reason": "length",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": tokens,
                    "total_tokens": prompt + tokens,
                },
            }
        ).encode()
        await self._plain(writer, 200, body)

    async def _stream(self, writer: asyncio.StreamWriter, tokens: int, prompt: int, usage: bool) -> None:
        created = int(time.time())
        head = (
            b'data: {"id":"stub","object":"chat.completion.chunk","created":%d,"model":"%s",'
            b'"choices":[{"index":0,"delta":' % (created, STUB_MODEL.encode())
        )
        token = _chunk(head + b'{"content":" tok"},"finish_reason":null}]}\n\n')
        last = _chunk(head + b'{},"finish_reason":"length"}]}\n\n')
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"x-aios-stub: %s\r\n\r\n" % self.header
        )
        lat = self.latency
        if lat.fixed_ms > 0:
            await asyncio.sleep(lat.fixed_ms / 1000.0)
        if lat.per_token_ms > 0:
            for _ in range(tokens):
                await asyncio.sleep(lat.per_token_ms / 1000.0)
                writer.write(token)
                await writer.drain()
        else:
            writer.write(token * tokens)
        writer.write(last)
        if usage:
            u = b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
                prompt,
                tokens,
                prompt + tokens,
            )
            writer.write(
                _chunk(
                    b'data: {"id":"stub","object":"chat.completion.chunk","created":%d,"model":"%s",'
                    b'"choices":[],"usage":%s}\n\n' % (created, STUB_MODEL.encode(), u)
                )
            )
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def serve(port: int, latency: StubLatency, *, host: str = "127.0.0.1") -> None:
    """Serve until cancelled."""
    handler = _Handler(latency)
    server = await asyncio.start_server(handler.serve, host, port, limit=_MAX_HEADER, backlog=4096)
    async with server:
        await server.serve_forever()


class StubServer(ChildServer):
    """The stub in a child process on a free loopback port: ``with StubServer(lat) as s: s.base_url``."""

    def __init__(
        self,
        latency: StubLatency,
        *,
        cpu: int | None = None,
        startup_timeout: float = 30.0,
        log_path: Path | None = None,
    ):
        self.latency = latency
        self.cpu = cpu
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.port = 0
        self.stop_grace = 5.0

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubServer:
        """Start the child process and wait for ``/health``."""
        if self._proc is not None:
            return self
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "aios.benchmarks.efficiency.stub_server",
            "--port",
            str(self.port),
            "--fixed-ms",
            str(self.latency.fixed_ms),
            "--per-token-ms",
            str(self.latency.per_token_ms),
        ]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        self._log = self.log_path.open("wb") if self.log_path is not None else None
        out: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(
                f"http://127.0.0.1:{self.port}/health",
                self._proc,
                timeout=self.startup_timeout,
                what="stub server",
            )
        except BaseException:
            self.stop()
            raise
        return self


def main(argv: list[str] | None = None) -> int:
    """Run the stub in the foreground (the harness starts it as a child process)."""
    p = argparse.ArgumentParser(description="Loopback OpenAI-compatible stub server (no model).")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fixed-ms", type=float, default=0.0)
    p.add_argument("--per-token-ms", type=float, default=0.0)
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = p.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, StubLatency(args.fixed_ms, args.per_token_ms)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
