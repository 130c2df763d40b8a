"""The remote SDK target: a kernel served by ``aios serve``, reached over HTTP.

``RemoteKernel`` has the agent-explicit API of the in-process ``Kernel`` that the SDK calls
(``llm``, ``syscall``, ``tool``, ``llm_with_tools``) plus ``fetch_stats``; ``RemoteConnection``
runs it on a private event loop in a daemon thread, exactly like ``KernelThread`` runs a local
kernel, so every SDK path (async from any loop, sync from any thread, streams) works unchanged.
``aios.connect(url, token=...)`` (in ``sdk``) starts one and makes it the process default.

What travels: chat calls go to the OpenAI-compatible ``/v1/chat/completions`` (SSE when the
caller streams); other syscalls to ``/v1/syscalls/{kind}/{op}`` in the wire format (``aios.wire``)
so results come back as the same dataclasses and bytes; a framework's own tool runs here, in the
client, inside a tool syscall the server opens and closes (``/v1/tool-runs``). Errors come back
as the same ``AIOSError`` classes; network failures become ``KernelNotRunningError`` and
timeouts ``DeadlineExceededError``.

Identity: calls from the SDK's anonymous agent (``"default"``) carry no ``X-AIOS-Agent`` and so
run as the token's own agent; any other agent name is sent, and the server decides whether the
token may act as it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import httpx

from aios.errors import (
    AIOSError,
    DeadlineExceededError,
    InvalidRequestError,
    KernelNotRunningError,
    StreamInterruptedError,
)
from aios.kernel import ToolLoopResult
from aios.types import LLMRequest, LLMResult, ToolCall, Usage
from aios.wire import decode, encode, error_from_body

T = TypeVar("T")

#: Seconds added to a call's own timeout before the HTTP client gives up on the server.
_SLACK_S = 15.0
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _endpoint_name(value: str, field: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequestError(f"{field} must be a lowercase syscall name, got {value!r}", field=field)
    return value


class RemoteKernel:
    """A kernel behind an AIOS server: the ``Kernel`` methods the SDK uses, over HTTP."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        anonymous_agent: str = "default",
        default_timeout: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        """``url`` is the server's root (``http://127.0.0.1:8000``); ``token`` its bearer token."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidRequestError(
                f"the kernel URL must start with http:// or https://, got {url!r}", field="url"
            )
        self.url = url.rstrip("/")
        self.anonymous_agent = anonymous_agent
        self.default_timeout = default_timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(default_timeout + _SLACK_S, connect=10.0),
        )
        #: The loop the client lives on (set by ``RemoteConnection``); streams submit through it.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """Until ``aclose``."""
        return not self._closed

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        self._closed = True
        await self._client.aclose()

    # -- plumbing ---------------------------------------------------------------------------------

    def _headers(
        self, agent: str | None, timeout: float | None = None, priority: int | None = None
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if agent and agent != self.anonymous_agent:
            headers["X-AIOS-Agent"] = agent
        if timeout is not None:
            headers["X-AIOS-Timeout"] = repr(float(timeout))
        if priority:
            headers["X-AIOS-Priority"] = str(int(priority))
        return headers

    def _read_timeout(self, timeout: float | None) -> httpx.Timeout:
        return httpx.Timeout(
            (timeout if timeout is not None else self.default_timeout) + _SLACK_S, connect=10.0
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        agent: str | None = None,
        body: Any = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if self._closed:
            raise KernelNotRunningError(f"the connection to {self.url} is closed")
        try:
            resp = await self._client.request(
                method,
                path,
                json=body,
                headers={**self._headers(agent), **(headers or {})},
                timeout=self._read_timeout(timeout),
            )
        except httpx.TimeoutException as exc:
            raise DeadlineExceededError(
                f"the kernel server at {self.url} did not answer in time: {exc!r}"
            ) from None
        except httpx.HTTPError as exc:
            raise KernelNotRunningError(f"cannot reach the kernel server at {self.url}: {exc!r}") from None
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code >= 400:
            raise error_from_body(resp.status_code, data)
        return data

    # -- the Kernel API ---------------------------------------------------------------------------

    async def llm(
        self,
        agent: str,
        request: LLMRequest,
        *,
        priority: int = 0,
        timeout: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> LLMResult:
        """One chat completion as an LLM syscall of ``agent``; streams into ``on_delta`` if given."""
        request.validate()
        body = _chat_body(request)
        headers = self._headers(agent, timeout, priority)
        if on_delta is None:
            data = await self._request(
                "POST", "/v1/chat/completions", body=body, timeout=timeout, headers=headers
            )
            return _result(data)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return await self._stream(body, headers, timeout, on_delta)

    async def _stream(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout: float | None,
        on_delta: Callable[[str], None],
    ) -> LLMResult:
        acc = _StreamAccumulator()
        try:
            async with self._client.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                headers=headers,
                timeout=self._read_timeout(timeout),
            ) as resp:
                if resp.status_code >= 400:
                    raw = await resp.aread()
                    try:
                        data = json.loads(raw)
                    except ValueError:
                        data = raw.decode("utf-8", "replace")
                    raise error_from_body(resp.status_code, data)
                async for event, data in _sse_events(resp.aiter_lines()):
                    if event == "error" or (isinstance(data, dict) and "error" in data):
                        raise error_from_body(503, data)
                    if data == "[DONE]":
                        return acc.result()
                    piece = acc.add(data)
                    if piece:
                        on_delta(piece)
        except httpx.TimeoutException as exc:
            raise DeadlineExceededError(
                f"the kernel server at {self.url} did not answer in time: {exc!r}"
            ) from None
        except httpx.HTTPError as exc:
            raise StreamInterruptedError(f"the stream from {self.url} broke: {exc!r}") from None
        raise StreamInterruptedError(f"the stream from {self.url} ended before [DONE]")

    async def syscall(
        self, agent: str, kind: str, op: str, /, *, timeout: float | None = None, **args: Any
    ) -> Any:
        """A memory/storage/tool/access syscall of ``agent``; the result as the in-process kernel gives it."""
        path = f"/v1/syscalls/{_endpoint_name(kind, 'kind')}/{_endpoint_name(op, 'op')}"
        body = {"args": encode(args), "timeout": timeout}
        data = await self._request("POST", path, agent=agent, body=body, timeout=timeout)
        return decode(data.get("result") if isinstance(data, dict) else None)

    async def tool(
        self,
        agent: str,
        name: str,
        call: Callable[[], Coroutine[Any, Any, T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """Run ``call`` here as a tool syscall of ``agent`` opened on the server; its exception propagates."""
        run = await self._request(
            "POST", "/v1/tool-runs", agent=agent, body={"name": name, "timeout": timeout}
        )
        run_id, budget = run["id"], run.get("deadline_s")

        async def report(ok: bool, error: BaseException | None = None) -> Any:
            err = None if error is None else {"type": type(error).__name__, "message": str(error)[:1000]}
            return await self._request(
                "POST", f"/v1/tool-runs/{run_id}", agent=agent, body={"ok": ok, "error": err}, timeout=30.0
            )

        try:
            async with asyncio.timeout(budget):
                value = await call()
        except TimeoutError:
            with contextlib.suppress(AIOSError):
                await report(False, DeadlineExceededError("the tool ran past its deadline"))
            raise DeadlineExceededError(f"tool {name!r} ran past its deadline ({budget:.3g} s)") from None
        except asyncio.CancelledError:
            # Tell the server in the background: the caller is leaving and must not wait for it.
            cleanup = asyncio.ensure_future(report(False, asyncio.CancelledError("cancelled by the caller")))
            cleanup.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise
        except Exception as exc:
            with contextlib.suppress(AIOSError):
                await report(False, exc)
            raise
        await report(True)
        return value

    async def llm_with_tools(
        self,
        agent: str,
        request: LLMRequest,
        *,
        max_rounds: int = 3,
        priority: int = 0,
        timeout: float | None = None,
    ) -> ToolLoopResult:
        """The call-tool path on the server's kernel tools."""
        body = _chat_body(request)
        body["tools"], body["tool_choice"], body["max_rounds"] = (
            request.tools,
            request.tool_choice,
            max_rounds,
        )
        data = await self._request(
            "POST",
            "/v1/tool-loop",
            body=body,
            timeout=timeout,
            headers=self._headers(agent, timeout, priority),
        )
        result = decode(data.get("result"))
        if not isinstance(result, ToolLoopResult):
            raise AIOSError(f"the server's tool loop answered {str(result)[:200]}")
        return result

    async def fetch_stats(self) -> dict[str, Any]:
        """The server kernel's metrics snapshot (agents limited to those the token may act as)."""
        data: dict[str, Any] = await self._request("GET", "/v1/stats")
        return data

    async def whoami(self, agent: str | None = None) -> dict[str, Any]:
        """The token's agent and groups, and the agent a call as ``agent`` would run as."""
        data: dict[str, Any] = await self._request("GET", "/v1/whoami", agent=agent)
        return data

    async def models(self) -> list[dict[str, Any]]:
        """The server's cores and routed model names."""
        data = await self._request("GET", "/v1/models")
        out: list[dict[str, Any]] = data["data"]
        return out


def _chat_body(request: LLMRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    for name in ("model", "tools", "tool_choice", "stop", "response_format", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return body


def _result(data: Any) -> LLMResult:
    try:
        choice = data["choices"][0]
        message = choice["message"]
        usage = data.get("usage") or {}
        ext = data.get("aios") or {}
        return LLMResult(
            text=message.get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            tool_calls=[
                ToolCall(id=tc["id"], name=tc["function"]["name"], arguments=tc["function"]["arguments"])
                for tc in message.get("tool_calls") or []
            ],
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                recomputed_tokens=int(ext.get("recomputed_tokens", 0)),
            ),
            model=data.get("model") or "",
            backend=ext.get("backend") or "",
            segments=list(ext.get("segments") or []),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise AIOSError(f"the kernel server's answer is not a chat completion: {exc!r}") from None


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, Any]]:
    """``(event, data)`` per server-sent event; data is JSON-decoded except ``[DONE]``."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            text = "\n".join(data)
            yield event, text if text == "[DONE]" else json.loads(text)
            event, data = None, []


class _StreamAccumulator:
    """Builds the ``LLMResult`` of a streamed completion from its chunks."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish: str = "stop"
        self.final: dict[str, Any] = {}
        self.model = ""

    def add(self, chunk: Any) -> str:
        """Take one chunk; return its text delta."""
        if not isinstance(chunk, dict):
            return ""
        self.model = chunk.get("model") or self.model
        for key in ("usage", "aios"):
            if chunk.get(key):
                self.final[key] = chunk[key]
        piece = ""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            piece += delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(int(tc.get("index", 0)), {"id": "", "name": "", "arguments": ""})
                fn = tc.get("function") or {}
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] = fn.get("name") or slot["name"]
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        self.text.append(piece)
        return piece

    def result(self) -> LLMResult:
        """The completed result."""
        message: dict[str, Any] = {"content": "".join(self.text)}
        if self.calls:
            message["tool_calls"] = [
                {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                for _, c in sorted(self.calls.items())
            ]
        return _result(
            {
                "choices": [{"message": message, "finish_reason": self.finish}],
                "usage": self.final.get("usage"),
                "aios": self.final.get("aios"),
                "model": self.model,
            }
        )


class RemoteConnection:
    """A ``RemoteKernel`` on a private event loop in a daemon thread (the form ``KernelThread`` has)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        anonymous_agent: str = "default",
        default_timeout: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url
        self._kwargs: dict[str, Any] = {
            "token": token,
            "anonymous_agent": anonymous_agent,
            "default_timeout": default_timeout,
            "transport": transport,
        }
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="aios-remote", daemon=True)
        self.kernel: RemoteKernel | None = None
        #: Called once by ``stop`` (the SDK forgets a default connection that closed).
        self.on_stop: list[Callable[[RemoteConnection], None]] = []

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self.kernel is not None and self.kernel.running and self._thread.is_alive()

    def start(self, *, check: bool = True, timeout: float = 30.0) -> RemoteConnection:
        """Start the thread; with ``check``, ask the server who the token is (fails fast if wrong)."""
        self._thread.start()

        async def boot() -> RemoteKernel:
            rk = RemoteKernel(self.url, **self._kwargs)
            rk.loop = asyncio.get_running_loop()
            if check:
                try:
                    await rk.whoami()
                except BaseException:
                    await rk.aclose()
                    raise
            return rk

        try:
            self.kernel = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(timeout)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self.loop.close()
            raise
        return self

    def call(
        self, fn: Callable[[RemoteKernel], Coroutine[Any, Any, T]], *, timeout: float | None = None
    ) -> T:
        """Run ``fn(remote kernel)`` on the connection's loop and wait (bounded by ``timeout``)."""
        kernel = self.kernel
        if kernel is None or not self.running:
            raise KernelNotRunningError(f"the connection to {self.url} is not open")
        if threading.current_thread() is self._thread:
            raise AIOSError(
                "a synchronous call from the connection's own loop would deadlock; use the async API"
            )
        fut = asyncio.run_coroutine_threadsafe(fn(kernel), self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise DeadlineExceededError(f"no answer within {timeout} s") from None

    def stop(self, *, timeout: float = 10.0) -> None:
        """Close the connections and stop the thread."""
        kernel = self.kernel
        if kernel is not None and kernel.running and self.loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(kernel.aclose(), self.loop).result(timeout)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()
        callbacks, self.on_stop = self.on_stop, []
        for cb in callbacks:
            cb(self)

    close = stop

    def __enter__(self) -> RemoteConnection:
        return self if self.kernel is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
