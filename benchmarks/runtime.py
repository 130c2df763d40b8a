"""Where agents' calls go during a run: the kernel, or the same backend called directly.

"With vs without the kernel" differs in one object only. Both modes build the backend from the
same ``BackendConfig`` through the same plugin factories the kernel uses; with the kernel the
agents' calls are syscalls (``KernelRuntime``), without it ``DirectLLM`` calls
``backend.generate`` itself with an unlimited slice, runs tools in-process (same validation,
same limits) and keeps memories in a list. ``CountingRuntime`` wraps either and counts calls
and tokens per task, so the accounting is identical in both modes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aios.adapters.react_reflexion import AgentRuntime
from aios.backends.base import Backend, Preempted, SliceControl
from aios.config import BackendConfig
from aios.errors import ConfigError, KernelInternalError, UnknownBackendError
from aios.managers.tools import Tool, ToolResult
from aios.plugins import make_plugin_manager, merged
from aios.types import LLMRequest, LLMResult, Message

#: Context window of the embedded model for benchmarks: multi-turn protocols (MINT) need room.
EMBEDDED_N_CTX = 8192


def backend_config(base_url: str | None = None, model: str | None = None, **options: Any) -> BackendConfig:
    """The run's one core: an OpenAI-compatible server if ``base_url`` is given, else the embedded model."""
    if base_url:
        return BackendConfig(
            name="remote",
            kind="openai",
            options={"base_url": base_url, "model": model or "default", **options},
        )
    opts: dict[str, Any] = {"n_ctx": EMBEDDED_N_CTX, **options}
    if model:
        opts["model_path"] = model
    return BackendConfig(name="embedded", kind="llamacpp", options=opts)


def make_backend(config: BackendConfig) -> Backend:
    """Build the backend exactly as the kernel would (same plugin factories, same options)."""
    factories = merged(make_plugin_manager().hook.aios_backends(), "backend kind")
    factory = factories.get(config.kind)
    if factory is None:
        raise UnknownBackendError(
            f"unknown backend kind {config.kind!r}; available: {sorted(factories)}", field="backends.kind"
        )
    try:
        backend: Backend = factory(name=config.name, **config.options)
    except TypeError as exc:
        raise ConfigError(f"backend {config.name!r}: {exc}", field=f"backends.{config.name}") from None
    return backend


class DirectLLM:
    """An ``AgentRuntime`` without a kernel: the backend is called directly, as a framework would."""

    def __init__(self, backend: Backend, *, timeout: float = 600.0):
        self.backend = backend
        self.timeout = timeout
        self.memories: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    async def llm_chat(
        self,
        messages: list[Message],
        *,
        agent: str,
        priority: int = 0,
        timeout: float | None = None,
        **params: Any,
    ) -> LLMResult:
        """``backend.generate`` with an unlimited slice, bounded by ``timeout`` seconds."""
        request = LLMRequest(messages=list(messages), **params).validate()
        async with asyncio.timeout(timeout or self.timeout):
            outcome = await self.backend.generate(request, control=SliceControl.unlimited())
        if isinstance(outcome, Preempted):  # an unlimited slice never ends early
            raise KernelInternalError(f"backend {self.backend.name!r} preempted an unlimited slice")
        return outcome.result

    async def run_tool(self, tool: Tool, arguments: dict[str, Any], *, agent: str) -> ToolResult:
        """The tool in this process, with its own validation and timeout (no syscall)."""
        return await tool.call(arguments, agent=agent)

    async def remember(self, text: str, *, agent: str, metadata: dict[str, Any]) -> None:
        """Keep the memory in a list (there is no memory manager without the kernel)."""
        self.memories.setdefault(agent, []).append((text, dict(metadata)))


@dataclass(slots=True)
class CallCounts:
    """LLM calls, tokens and tool calls made by one agent."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    llm_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class CountingRuntime:
    """Wraps a runtime and counts what one task's agent did through it."""

    def __init__(self, inner: AgentRuntime):
        self.inner = inner
        self.counts = CallCounts()

    async def llm_chat(self, messages: list[Message], *, agent: str, **params: Any) -> LLMResult:
        """Forward and count."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            result = await self.inner.llm_chat(messages, agent=agent, **params)
        finally:
            self.counts.llm_seconds += loop.time() - start
        self.counts.llm_calls += 1
        self.counts.prompt_tokens += result.usage.prompt_tokens
        self.counts.completion_tokens += result.usage.completion_tokens
        return result

    async def run_tool(self, tool: Tool, arguments: dict[str, Any], *, agent: str) -> ToolResult:
        """Forward and count."""
        self.counts.tool_calls += 1
        return await self.inner.run_tool(tool, arguments, agent=agent)

    async def remember(self, text: str, *, agent: str, metadata: dict[str, Any]) -> None:
        """Forward."""
        await self.inner.remember(text, agent=agent, metadata=metadata)
