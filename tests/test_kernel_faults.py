"""Faults of an HTTP core seen through the kernel: every caller gets a typed error promptly, and the
other agents' calls on the same core still finish (scripted server: respx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from aios.backends.openai_backend import OpenAIBackend
from aios.config import KernelConfig
from aios.errors import (
    AIOSError,
    BackendError,
    BackendTimeoutError,
    DeadlineExceededError,
    RateLimitedError,
    StreamInterruptedError,
)
from aios.kernel import Kernel
from aios.syscalls import Status
from aios.types import LLMRequest
from tests.backends.test_openai_backend import (
    ScriptedStream,
    chunk,
    error,
    event,
    scripted,
    streaming,
    text_stream,
)

BASE = "http://llm.test/v1"
pytestmark = pytest.mark.timeout(30)


def answer(request: httpx.Request) -> httpx.Response:
    """The scripted server: the user message says how to misbehave."""
    prompt = json.loads(request.content)["messages"][0]["content"]
    if prompt == "rate-limit":
        return error(429, "slow down", headers={"retry-after": "0"})
    if prompt == "server-error":
        return error(500, "internal error")
    if prompt == "hang":
        raise httpx.ReadTimeout("read timed out", request=request)
    if prompt == "cut":
        body = ScriptedStream(
            event(chunk(role="assistant", content="")),
            event(chunk("half ")),
            httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        )
        return scripted(body)
    if prompt == "slow":
        return scripted(ScriptedStream(event(chunk("x")), asyncio.Event()))  # never finishes
    return streaming(text_stream("fine ", "answer"))


@pytest.fixture
async def kernel() -> AsyncIterator[Kernel]:
    async def no_sleep(_: float) -> None:
        return None

    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.post("/chat/completions").mock(side_effect=answer)
        async with httpx.AsyncClient() as http:
            backend = OpenAIBackend(
                name="remote",
                base_url=BASE,
                model="m",
                capacity=4,
                max_retries=1,
                http_client=http,
                sleep=no_sleep,
            )
            async with Kernel(
                KernelConfig(backends=[]), backends={"remote": backend}, entry_points=False
            ) as k:
                yield k


def ask(prompt: str) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": prompt}], max_tokens=16)


@pytest.mark.parametrize(
    ("prompt", "error_type", "status"),
    [
        ("rate-limit", RateLimitedError, 429),
        ("server-error", BackendError, 500),
        ("hang", BackendTimeoutError, None),
        ("cut", StreamInterruptedError, None),
    ],
)
async def test_a_faulty_call_fails_alone_with_a_typed_error(
    kernel: Kernel, prompt: str, error_type: type[AIOSError], status: int | None
):
    good = [kernel.submit_llm(f"good-{i}", ask("hello")) for i in range(6)]
    bad = kernel.submit_llm("unlucky", ask(prompt))
    with pytest.raises(error_type) as info:
        await bad.future
    assert info.value.agent == "unlucky"
    if status is not None:
        assert isinstance(info.value, BackendError) and info.value.status_code == status
    results = await asyncio.gather(*(g.future for g in good))
    assert [r.text for r in results] == ["fine answer"] * 6
    assert bad.status is Status.FAILED and kernel.metrics.errors[error_type.__name__] == 1
    assert kernel.dispatcher.in_flight() == {"remote": 0}


async def test_a_call_past_its_deadline_is_cut_and_the_slot_is_reused(kernel: Kernel):
    slow = kernel.submit_llm("sleepy", ask("slow"), timeout=0.2)
    with pytest.raises(DeadlineExceededError):
        await slow.future
    assert (slow.turnaround or 9.9) < 1.5
    assert (await kernel.llm("next", ask("hello"))).text == "fine answer"
