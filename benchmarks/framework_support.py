"""What every third-party framework factory needs: where its OpenAI client points, and the tools.

``endpoint(spec, adapter)`` is the one place "with vs without the kernel" is decided for a
framework agent:

- with the kernel, the block runs with ``aios.patched(adapter)``, the run's kernel current and
  the agent scope set to ``spec.name``: the framework's client is built as usual but never sends
  a request, its calls (and its tool runs, where the adapter routes them) become syscalls of
  ``spec.name``. On leaving, that agent's calls and tokens are copied from the kernel's metrics
  into the run's counters, so records are accounted the same way in both modes;
- without it, the framework's client talks to a loopback relay over ``spec.runtime`` (the
  backend called directly, calls counted), see ``relay.py``.

Sync frameworks run inside ``endpoint`` through ``asyncio.to_thread``: the thread inherits the
context, so the adapters' sync paths reach the run's kernel on its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aios import sdk
from aios.adapters.react_reflexion.agents import FINISH
from aios.adapters.registry import patched
from aios.errors import AIOSError, BackendError, DeadlineExceededError, InvalidRequestError
from aios.kernel import current_kernel
from aios.managers.tools import Tool

from .frameworks import AgentSpec
from .relay import relay
from .runtime import CountingRuntime

T = TypeVar("T")

#: The base URL handed to a patched framework: it is never contacted (the adapter answers).
UNUSED_URL = "http://aios-kernel.invalid/v1"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a framework's OpenAI client points for one agent, and whether the kernel is in the way."""

    base_url: str
    api_key: str
    model: str
    kernel: bool


@contextlib.asynccontextmanager
async def endpoint(spec: AgentSpec, adapter: str) -> AsyncIterator[Endpoint]:
    """Route the framework agent of ``spec`` through the kernel (patched) or the direct relay."""
    model = spec.backend_model or "aios"
    if spec.kernel is None:
        async with relay(spec.runtime, spec.name, model=model) as ep:
            yield Endpoint(ep.base_url, ep.api_key, ep.model, kernel=False)
        return
    token = current_kernel.set(spec.kernel)
    try:
        with patched(adapter), sdk.agent(spec.name):
            yield Endpoint(UNUSED_URL, "aios", model, kernel=True)
    finally:
        current_kernel.reset(token)
        _count_from_kernel(spec)


def _count_from_kernel(spec: AgentSpec) -> None:
    """Copy the agent's kernel metrics into the run's counters (its calls bypassed the runtime)."""
    if spec.kernel is None or not isinstance(spec.runtime, CountingRuntime):
        return
    m = spec.kernel.metrics.agents.get(spec.name)
    if m is None:
        return
    c = spec.runtime.counts
    c.llm_calls = max(c.llm_calls, m.by_kind.get("llm", 0))
    c.tool_calls = max(c.tool_calls, m.by_kind.get("tool", 0))
    c.prompt_tokens = max(c.prompt_tokens, m.prompt_tokens)
    c.completion_tokens = max(c.completion_tokens, m.completion_tokens)
    c.llm_seconds = max(c.llm_seconds, m.seconds_by_kind.get("llm", 0.0))


def client_error(exc: BaseException) -> AIOSError | None:
    """``exc`` as the ``AIOSError`` the kernel would have raised, if it is one or the OpenAI client's.

    Without the kernel a framework hears of a backend failure as its OpenAI client's error (the
    relay answers with the status of the kernel's error kind); mapping it back keeps a failed
    call a harness error, recorded and retried on resume, in both modes. Anything else is None.
    """
    if isinstance(exc, AIOSError):
        return exc
    openai = sys.modules.get("openai")  # an OpenAI client error means the module is loaded
    if openai is None or not isinstance(exc, openai.APIError):
        return None
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = body.get("message") if isinstance(body, dict) else None
    message = f"the model call failed (through the relay): {detail or exc}"
    if status == 400:
        param = body.get("param") if isinstance(body, dict) else None
        return InvalidRequestError(message, field=param if isinstance(param, str) else "request")
    return BackendError(message, backend="relay", status_code=status if isinstance(status, int) else None)


#: Slack over a tool's own timeout before a framework's thread stops waiting for the run's loop.
BRIDGE_SLACK_S = 30.0


def run_on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
    """Run ``coro`` on the run's ``loop`` from a framework's own thread, waiting ``timeout`` at most.

    The tool's own timeout normally ends the call first; the bound is for a loop that has stopped
    running (the run ended while the thread was mid-chat), which would leave the thread blocked
    forever and the process unable to exit.
    """
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        if not loop.is_running() and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()  # it will never start: say so now, not as a warning at collection
        raise DeadlineExceededError(f"the run's event loop did not answer within {timeout:g} s") from None


def episode_tools(spec: AgentSpec) -> list[Tool]:
    """The episode's tools plus its answer tool (the environment's ``finish``, else the default)."""
    ep = spec.episode
    return [*ep.tools, ep.finish or FINISH]


def tool_runner(spec: AgentSpec, tool: Tool) -> Callable[[dict[str, Any]], Awaitable[str]]:
    """``await run(arguments)`` runs ``tool`` for the agent and returns the observation text.

    With the kernel the body calls the tool itself: the framework runs it through its patched tool
    path, which is already a tool syscall. Without it the run goes through ``spec.runtime`` (counted).
    A model's bad arguments or a failing tool come back as the observation, never raised.
    """

    async def run(arguments: dict[str, Any]) -> str:
        try:
            if spec.kernel is not None:
                result = await tool.call(arguments, agent=spec.name)
            else:
                result = await spec.runtime.run_tool(tool, arguments, agent=spec.name)
        except InvalidRequestError as exc:
            # Counted in both modes (the runtime counts before it forwards), then fed back.
            if not (exc.field or "").startswith("arguments"):
                raise
            return f"invalid arguments for {tool.name}: {exc.message}"
        return result.content()

    return run
