"""The ``openai`` backend: any OpenAI-compatible chat server (vLLM, OpenAI, Ollama, llama.cpp).

Every call streams (``stream=True`` with ``stream_options.include_usage``) so that tokens can be
counted as they arrive and the generation cut at the end of a time slice. Each non-empty content
chunk counts as one token (vLLM and llama.cpp's servers stream one token per chunk) unless the
server's own usage says otherwise; the dispatcher's ``SliceControl.tick`` is called per chunk.
Cutting means closing the HTTP stream: the server sees the disconnect and stops generating.

Resuming a text snapshot is done by recomputation: the original messages are sent again with the
partial answer as a trailing ``{"role": "assistant", "content": <text so far>}`` message.

- ``continuation="vllm"`` adds vLLM's documented ``continue_final_message=True`` and
  ``add_generation_prompt=False``, so the chat template leaves the assistant turn open and the
  model continues the very same turn. It also asks for ``continuous_usage_stats`` so that a cut
  slice knows its exact prompt and completion counts.
- ``continuation="prefix"`` sends only the trailing assistant message and leaves its meaning to
  the server. What servers do with it differs:

  * ``python -m llama_cpp.server`` (llama-cpp-python 0.3.36, measured with SmolLM2-135M's ChatML
    template) does **not** continue: it always renders with a generation prompt, so the partial
    message is closed (``<|im_end|>``) and a fresh ``<|im_start|>assistant`` turn is opened; the
    model starts a new answer. The prompt grew by exactly ``<|im_start|>assistant\\n{partial}
    <|im_end|>\\n`` (38 → 50 tokens for a 6-token partial), and greedy output after the cut was
    the opening of a new answer ("The sea, a vast and" + "In the depths of the ocean, ..."); cut
    every 12 tokens, each resumed slice began the same new answer again. It ignores unknown fields
    (``continue_final_message``, ``priority``) silently, does not send a usage chunk when
    streaming, and reports body validation errors as HTTP 500. The text before each cut is still
    kept exactly and nothing is lost or repeated at the seams, but the answer may change course
    there; use ``llama-server`` (llama.cpp's C++ server) or vLLM for real continuation.
  * Not measured here: recent llama.cpp ``llama-server`` treats a trailing assistant message as
    a prefill and continues it; Ollama's maintainers say its chat endpoint does too
    (ollama/ollama#6778); OpenAI does not document what it does.

Recompute-based resume is not bit-identical to an uninterrupted run even at temperature 0
(prefill and one-by-one decode give slightly different logits); what holds is that every slice's
text is kept exactly and ``"".join(segments) == text``.

Errors are translated into ``aios.errors`` in one place (``_translate``). Retries (exponential
backoff with jitter, honouring ``Retry-After``) happen only before the first token of a slice has
arrived: once output has been streamed to ``on_delta`` and into the slice, sending the request
again would deliver that output a second time (and, off greedy decoding, a different one).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import httpx
import openai

from aios.backends.base import Capabilities, Completed, Outcome, Preempted, SliceControl, Snapshot
from aios.backends.openai_stream import ChunkView, StreamBrokenError, read_chunk, sse_chunks
from aios.errors import (
    AIOSError,
    BackendError,
    BackendTimeoutError,
    ConfigError,
    InvalidRequestError,
    RateLimitedError,
    StreamInterruptedError,
)
from aios.types import FinishReason, LLMRequest, LLMResult, Message, ToolCall, Usage, message_text

Continuation = Literal["vllm", "prefix"]

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
#: A longer Retry-After is clamped: waiting minutes inside one call would hold a core's slot.
_RETRY_AFTER_CAP_S = 30.0
#: Body keys the backend owns; ``extra_body`` may not replace them.
_RESERVED_KEYS = frozenset(("model", "messages", "stream", "max_tokens", "priority")) | {
    "continue_final_message",
    "add_generation_prompt",
}
_FINISH_REASONS: Mapping[str, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Slice:
    """What one request to the server produced."""

    pieces: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    #: Chunks carrying content or tool-call deltas: the token count unless the server reports one.
    chunks: int = 0
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cut: bool = False
    #: ``prompt_tokens`` is our estimate (the slice was cut before the server reported usage).
    prompt_estimated: bool = False

    @property
    def text(self) -> str:
        """The content streamed in this slice."""
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        """Completion tokens of this slice: the server's count if it sent one, else chunks."""
        return self.completion_tokens if self.completion_tokens is not None else self.chunks

    def absorb(self, view: ChunkView) -> bool:
        """Take in one chunk; True if it carried output (content or a tool-call delta)."""
        if view.prompt_tokens is not None:
            self.prompt_tokens = view.prompt_tokens
        if view.completion_tokens is not None:
            self.completion_tokens = view.completion_tokens
        if view.finish_reason is not None:
            self.finish_reason = view.finish_reason
        for index, call_id, fn_name, args in view.tool_calls:
            parts = self.tool_calls.setdefault(index, _ToolCallParts())
            parts.id = parts.id or call_id or ""
            parts.name = parts.name or fn_name or ""
            if args:
                parts.arguments.append(args)
        if view.content:
            self.pieces.append(view.content)
        if not view.content and not view.tool_calls:
            return False
        self.chunks += 1
        return True

    def finished_tool_calls(self) -> list[ToolCall]:
        """The assembled tool calls, in index order."""
        return [
            ToolCall(id=p.id or f"call_{i}", name=p.name, arguments="".join(p.arguments))
            for i, p in sorted(self.tool_calls.items())
        ]


class OpenAIBackend:
    """A core served by an OpenAI-compatible HTTP server, reached through the ``openai`` SDK.

    Tool calls are never cut: once a tool-call delta has arrived, the slice runs to the end of
    the response, because half a tool call cannot be continued from a text snapshot.
    ``sleep`` (the retry wait) and ``jitter`` (a float in [0, 1)) are injectable for tests.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        capacity: int = 8,
        timeout: float = 60.0,
        max_retries: int = 2,
        pass_priority: bool = False,
        continuation: Continuation = "prefix",
        http_client: httpx.AsyncClient | None = None,
        extra_body: dict[str, Any] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        jitter: Callable[[], float] | None = None,
    ):
        _check_config(
            name=name,
            base_url=base_url,
            model=model,
            api_key=api_key,
            capacity=capacity,
            timeout=timeout,
            max_retries=max_retries,
            pass_priority=pass_priority,
            continuation=continuation,
            http_client=http_client,
            extra_body=extra_body,
        )
        self.name = name
        self.model = model
        self.base_url = base_url
        self.capacity = capacity
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.pass_priority = pass_priority
        self.continuation: Continuation = continuation
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        self.capabilities = Capabilities(
            streaming=True, snapshot="text", capacity=capacity, tools=True, priority=pass_priority
        )
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._given_http = http_client
        self._own_http: httpx.AsyncClient | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._sleep: Callable[[float], Awaitable[None]] = sleep or asyncio.sleep
        self._jitter: Callable[[], float] = jitter or random.Random().random

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r})"

    async def start(self) -> None:
        """Open the SDK client (and an HTTP connection pool sized to ``capacity`` if none was given)."""
        if self._client is not None:
            return
        http = self._given_http
        if http is None:
            # Headroom over capacity: a cut stream's connection is torn down, not reused, and a new
            # slice may start before the old socket is gone.
            http = self._own_http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(
                    max_connections=2 * self.capacity, max_keepalive_connections=self.capacity
                ),
            )
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            http_client=http,
            timeout=httpx.Timeout(self.timeout),
            max_retries=0,  # retries are ours: only before the first token of a slice
        )

    async def close(self) -> None:
        """Close the HTTP client if this backend created it; an injected client stays open."""
        self._client = None
        own, self._own_http = self._own_http, None
        if own is not None:
            await own.aclose()

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
        priority: int = 0,
    ) -> Outcome:
        """Stream one slice of ``request`` (continuing ``resume``) until done or the slice ends."""
        client = self._client
        if client is None:
            raise BackendError(f"backend {self.name!r} is not started", backend=self.name)
        if resume is not None:
            self._check_snapshot(resume)
        done_tokens = resume.tokens if resume is not None else 0
        remaining = request.max_tokens - done_tokens
        if remaining <= 0 and resume is not None:
            return Completed(self._result(resume.text, "length", [], resume.usage, resume.segments))

        body = self._body(request, resume=resume, max_tokens=remaining, priority=priority)
        part = await self._run_slice(client, body, control, on_delta, budget=remaining)
        if part.cut and part.prompt_tokens is None:
            part.prompt_estimated = True
            # Servers report usage only in the last chunk, which a cut slice never gets. Charging
            # 0 for the prompt would make long, often-cut generations look cheap to the `fair`
            # policy (and to quotas), although every resume re-evaluates that prompt.
            part.prompt_tokens = estimate_prompt_tokens(body["messages"])

        usage = _add_slice_usage(resume, part)
        text = (resume.text if resume is not None else "") + part.text
        segments = [*(resume.segments if resume is not None else []), part.text]
        if part.cut:
            snap = Snapshot(
                kind="text",
                text=text,
                tokens=done_tokens + part.tokens,
                usage=usage,
                segments=segments,
                backend=self.name,
                # Whether the original prompt's count is still our estimate (see _add_slice_usage).
                data={
                    "prompt_estimated": part.prompt_estimated
                    and (resume is None or _estimated(resume) or resume.usage.prompt_tokens == 0)
                },
            )
            return Preempted(snap)
        calls = part.finished_tool_calls()
        # Some servers finish a tool-call response with "stop".
        reason = "tool_calls" if calls else _FINISH_REASONS.get(part.finish_reason or "", "stop")
        return Completed(self._result(text, reason, calls, usage, segments))

    def _result(
        self,
        text: str,
        reason: FinishReason,
        calls: list[ToolCall],
        usage: Usage,
        segments: list[str],
    ) -> LLMResult:
        return LLMResult(
            text=text,
            finish_reason=reason,
            tool_calls=calls,
            usage=usage,
            model=self.model,
            backend=self.name,
            segments=list(segments),
        )

    def _check_snapshot(self, snap: Snapshot) -> None:
        if snap.kind != "text":
            raise InvalidRequestError(
                f"backend {self.name!r} resumes text snapshots only, got {snap.kind!r}", field="resume"
            )
        if snap.backend and snap.backend != self.name:
            raise InvalidRequestError(
                f"snapshot was made by backend {snap.backend!r}, not {self.name!r}", field="resume"
            )

    def _body(
        self, request: LLMRequest, *, resume: Snapshot | None, max_tokens: int, priority: int
    ) -> dict[str, Any]:
        """The request body, less ``model`` and ``stream``, which the SDK call sets itself."""
        messages: list[Message] = list(request.messages)
        stream_options: dict[str, Any] = {"include_usage": True}
        body: dict[str, Any] = {
            "messages": messages,
            "stream_options": stream_options,
            "temperature": request.temperature,
            "max_tokens": max_tokens,
        }
        if request.tools:
            body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.stop:
            body["stop"] = request.stop
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.seed is not None:
            body["seed"] = request.seed
        if self.pass_priority:
            body["priority"] = priority
        if self.continuation == "vllm":
            # vLLM fills usage into every chunk, so a cut slice still knows its exact counts.
            stream_options["continuous_usage_stats"] = True
        if resume is not None and resume.text:
            messages.append({"role": "assistant", "content": resume.text})
            if self.continuation == "vllm":
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        body.update(self.extra_body)
        return body

    async def _run_slice(
        self,
        client: openai.AsyncOpenAI,
        body: dict[str, Any],
        control: SliceControl,
        on_delta: Callable[[str], None] | None,
        *,
        budget: int,
    ) -> _Slice:
        """One slice, retried while nothing has been received yet."""
        attempt = 0
        while True:
            part = _Slice()
            try:
                await self._stream(client, body, part, control, on_delta, budget=budget)
                return part
            except (openai.APIError, httpx.HTTPError, json.JSONDecodeError, StreamBrokenError) as exc:
                err = _translate(exc, backend=self.name, streamed=part.chunks > 0)
                if not err.retryable or part.chunks > 0 or attempt >= self.max_retries:
                    raise err from exc
                attempt += 1
                wait = _retry_after(exc)
                delay = wait if wait is not None else self._backoff(attempt)
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter (half fixed, half random) for retry ``attempt`` (1-based)."""
        ceiling = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._jitter())

    async def _stream(
        self,
        client: openai.AsyncOpenAI,
        body: dict[str, Any],
        part: _Slice,
        control: SliceControl,
        on_delta: Callable[[str], None] | None,
        *,
        budget: int,
    ) -> None:
        """One request: stream into ``part`` until the response ends or the slice is over."""
        # The whole body goes in extra_body (merged last, verbatim): the SDK's recursive transform
        # of typed params walks every message and cost as much CPU as the rest of the call.
        create = client.chat.completions.with_streaming_response.create
        async with create(model=self.model, messages=[], stream=True, extra_body=body) as response:
            async for chunk in sse_chunks(response.iter_lines()):
                view = read_chunk(chunk)
                if not part.absorb(view):
                    continue
                if view.content and on_delta is not None:
                    on_delta(view.content)
                over = control.tick()
                # Never cut inside a tool call, nor when the request's token budget is spent: the
                # server is about to say "length" and a snapshot would only cost a requeue.
                if over and not part.tool_calls and view.finish_reason is None and part.tokens < budget:
                    part.cut = True
                    return  # leaving ``async with`` closes the response: the server stops
        if part.finish_reason is None:
            raise StreamBrokenError("stream ended without a finish_reason")


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """A rough token count of a prompt (4 characters a token, plus each message's framing)."""
    return sum(len(message_text(m)) // 4 + 4 for m in messages)


def _estimated(snap: Snapshot) -> bool:
    return isinstance(snap.data, dict) and bool(snap.data.get("prompt_estimated"))


def _add_slice_usage(resume: Snapshot | None, part: _Slice) -> Usage:
    """Sum usage over slices: a resumed slice's prompt was evaluated again, so it is recomputed."""
    if resume is None:
        return Usage(prompt_tokens=part.prompt_tokens or 0, completion_tokens=part.tokens)
    prev = resume.usage
    prompt = prev.prompt_tokens
    if (prompt == 0 or _estimated(resume)) and part.prompt_tokens and not part.prompt_estimated:
        # The first slice was cut before the server reported its prompt: estimate the original
        # prompt as this slice's prompt minus the partial answer sent back with it (an
        # over-estimate by the turn framing where the server closes the partial turn).
        prompt = max(0, part.prompt_tokens - resume.tokens)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=prev.completion_tokens + part.tokens,
        recomputed_tokens=prev.recomputed_tokens + (part.prompt_tokens or 0),
    )


def _retry_after(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``), clamped."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    wait: float | None = None
    try:
        if "retry-after-ms" in headers:
            wait = float(headers["retry-after-ms"]) / 1000.0
        elif "retry-after" in headers:
            raw = headers["retry-after"]
            try:
                wait = float(raw)
            except ValueError:
                wait = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
    except (ValueError, TypeError):
        return None
    if wait is None or not math.isfinite(wait):
        return None
    return min(max(wait, 0.0), _RETRY_AFTER_CAP_S)


def _server_message(exc: openai.APIStatusError) -> tuple[str, str | None]:
    """The server's own error message and the parameter it blames, if it names one."""
    body = exc.body
    if isinstance(body, Mapping):
        msg = body.get("message")
        param = body.get("param")
        return (
            msg if isinstance(msg, str) and msg else exc.message,
            param if isinstance(param, str) and param else None,
        )
    return exc.message, None


def _translate(exc: Exception, *, backend: str, streamed: bool) -> AIOSError:
    """The one boundary where foreign (SDK, httpx, JSON) errors become ``aios.errors``."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message, param = _server_message(exc)
        text = f"{backend}: HTTP {status}: {message}"
        if status == 429:
            return RateLimitedError(text, backend=backend, status_code=429, retryable=True)
        if status == 408:
            return BackendTimeoutError(text, backend=backend, status_code=408, retryable=True)
        if status >= 500:
            return BackendError(text, backend=backend, status_code=status, retryable=True)
        if status == 400:
            return InvalidRequestError(text, field=param or "request")
        return BackendError(text, backend=backend, status_code=status, retryable=False)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return BackendTimeoutError(f"{backend}: timed out: {exc}", backend=backend, retryable=not streamed)
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(f"{backend}: connection failed: {exc}", backend=backend, retryable=True)
    # The stream broke: dropped connection, malformed JSON or chunk, an error event, or no
    # finish_reason. Before any token nothing reached the caller, so sending it again is safe.
    return StreamInterruptedError(
        f"{backend}: stream interrupted: {exc}", backend=backend, retryable=not streamed
    )


def _check_config(
    *,
    name: object,
    base_url: object,
    model: object,
    api_key: object,
    capacity: object,
    timeout: object,
    max_retries: object,
    pass_priority: object,
    continuation: object,
    http_client: object,
    extra_body: object,
) -> None:
    """Raise ``ConfigError`` naming the first bad constructor argument."""
    for fld, value in (("name", name), ("model", model)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{fld} must be a non-empty string, got {value!r}", field=fld)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}", field="base_url")
    try:
        host = httpx.URL(base_url).host
    except httpx.InvalidURL as exc:
        raise ConfigError(f"base_url is not a valid URL: {exc}", field="base_url") from None
    if not host:
        raise ConfigError(f"base_url has no host: {base_url!r}", field="base_url")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError("api_key must be a string or None", field="api_key")
    if not _is_int(capacity) or cast(int, capacity) < 1:
        raise ConfigError(f"capacity must be an integer >= 1, got {capacity!r}", field="capacity")
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}", field="timeout")
    if not _is_int(max_retries) or cast(int, max_retries) < 0:
        raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}", field="max_retries")
    if not isinstance(pass_priority, bool):
        raise ConfigError("pass_priority must be a bool", field="pass_priority")
    if continuation not in ("vllm", "prefix"):
        raise ConfigError(
            f"continuation must be 'vllm' or 'prefix', got {continuation!r}", field="continuation"
        )
    if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
        raise ConfigError("http_client must be an httpx.AsyncClient", field="http_client")
    if extra_body is not None:
        if not isinstance(extra_body, dict) or not all(isinstance(k, str) for k in extra_body):
            raise ConfigError("extra_body must be a dict with string keys", field="extra_body")
        clash = _RESERVED_KEYS.intersection(extra_body)
        if clash:
            raise ConfigError(
                f"extra_body may not set {sorted(clash)}: the backend owns them", field="extra_body"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
