"""How a call reaches the backend in each mode: the backend object, the ``openai`` SDK, or the kernel.

A driver runs one LLM call and fills in its ``CallRecord`` (first token, end, token counts), or
runs one tool call. ``SDKDriver`` builds its client exactly as the kernel's ``openai`` backend
does (``sdk_client``), so the ``direct`` and ``kernel`` modes differ only in the kernel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpx
import openai

from aios.backends.base import Backend, Completed, SliceControl
from aios.benchmarks.efficiency.workload import ToolStep
from aios.errors import BackendError
from aios.kernel import Kernel
from aios.types import LLMRequest, Usage


@dataclass(slots=True)
class CallRecord:
    """One call as the agent saw it; times are seconds since the run started."""

    agent: str
    kind: str
    submitted: float
    first_token: float | None = None
    finished: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def waiting(self) -> float:
        """Submission to first token (to the end, for a tool call or an empty answer)."""
        return (self.first_token if self.first_token is not None else self.finished) - self.submitted

    @property
    def turnaround(self) -> float:
        """Submission to completion."""
        return self.finished - self.submitted


class Driver(Protocol):
    """Runs calls for agents; ``start``/``close`` bracket a run."""

    label: str

    async def start(self) -> None:
        """Open what the driver needs (model, connection pool, kernel)."""

    async def close(self) -> None:
        """Release it."""

    async def llm(self, agent: str, request: LLMRequest, rec: CallRecord, now: Callable[[], float]) -> None:
        """Run one LLM call to its end, filling ``rec``."""

    async def tool(self, agent: str, step: ToolStep) -> None:
        """Run one tool call."""


def _first_token(rec: CallRecord, now: Callable[[], float]) -> Callable[[str], None]:
    def on_delta(_piece: str) -> None:
        if rec.first_token is None:
            rec.first_token = now()

    return on_delta


def _fill_usage(rec: CallRecord, usage: Usage) -> None:
    rec.prompt_tokens = usage.prompt_tokens
    rec.completion_tokens = usage.completion_tokens


class BackendDriver:
    """Calls ``backend.generate`` directly with an unlimited slice (the in-process backends)."""

    def __init__(self, backend: Backend, *, label: str = "backend"):
        self.backend = backend
        self.label = label

    async def start(self) -> None:
        """Start the backend (load the model)."""
        await self.backend.start()

    async def close(self) -> None:
        """Close the backend."""
        await self.backend.close()

    async def llm(self, agent: str, request: LLMRequest, rec: CallRecord, now: Callable[[], float]) -> None:
        """One generation, straight to the backend."""
        out = await self.backend.generate(
            request, control=SliceControl.unlimited(), on_delta=_first_token(rec, now)
        )
        if not isinstance(out, Completed):
            raise BackendError("an unlimited slice was preempted", backend=self.backend.name)
        _fill_usage(rec, out.result.usage)

    async def tool(self, agent: str, step: ToolStep) -> None:
        """A simulated tool: wait."""
        await asyncio.sleep(step.seconds)


def sdk_client(base_url: str, *, capacity: int, timeout: float, api_key: str = "EMPTY") -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` client with the HTTP settings of ``aios.backends.openai_backend``'s own pool."""
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=2 * capacity, max_keepalive_connections=capacity),
    )
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, http_client=http, timeout=httpx.Timeout(timeout), max_retries=0
    )


class SDKDriver:
    """Streams each call through the ``openai`` SDK, as an agent without a kernel would."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        capacity: int,
        timeout: float = 600.0,
        extra_body: dict[str, Any] | None = None,
        label: str = "openai-sdk",
    ):
        self.base_url = base_url
        self.model = model
        self.capacity = capacity
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self.label = label
        self._client: openai.AsyncOpenAI | None = None

    async def start(self) -> None:
        """Open the client and its pool."""
        if self._client is None:
            self._client = sdk_client(self.base_url, capacity=self.capacity, timeout=self.timeout)

    async def close(self) -> None:
        """Close the pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def llm(self, agent: str, request: LLMRequest, rec: CallRecord, now: Callable[[], float]) -> None:
        """One streamed chat completion; each content chunk is one token unless usage says otherwise."""
        if self._client is None:
            raise BackendError("the SDK driver is not started", backend=self.label)
        body: dict[str, Any] = {
            "stream_options": {"include_usage": True},
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            **self.extra_body,
        }
        stream = await self._client.chat.completions.create(
            model=self.model, messages=cast(Any, request.messages), stream=True, extra_body=body
        )
        chunks = 0
        usage = None
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if rec.first_token is None:
                        rec.first_token = now()
                    chunks += 1
                if chunk.usage is not None:
                    usage = chunk.usage
        rec.prompt_tokens = usage.prompt_tokens if usage is not None else 0
        rec.completion_tokens = usage.completion_tokens if usage is not None else chunks

    async def tool(self, agent: str, step: ToolStep) -> None:
        """A simulated tool: wait."""
        await asyncio.sleep(step.seconds)


class KernelDriver:
    """Sends every call through a kernel as a syscall (tool calls too, as ``tool`` syscalls)."""

    def __init__(self, kernel: Kernel, *, label: str = "kernel"):
        self.kernel = kernel
        self.label = label

    async def start(self) -> None:
        """Start the kernel (and so its backend)."""
        await self.kernel.start()

    async def close(self) -> None:
        """Stop the kernel."""
        await self.kernel.stop()

    async def llm(self, agent: str, request: LLMRequest, rec: CallRecord, now: Callable[[], float]) -> None:
        """One LLM syscall."""
        result = await self.kernel.llm(agent, request, on_delta=_first_token(rec, now))
        _fill_usage(rec, result.usage)

    async def tool(self, agent: str, step: ToolStep) -> None:
        """One tool syscall wrapping the simulated tool."""

        async def wait() -> None:
            await asyncio.sleep(step.seconds)

        await self.kernel.tool(agent, step.name, wait)


def clock_since(t0: float) -> Callable[[], float]:
    """Seconds since ``t0`` on ``perf_counter``."""
    return lambda: time.perf_counter() - t0
