"""The kernel on the real embedded model: round-robin cuts a long generation several times while
other agents use the model between the cuts, and the state snapshots make the resumed output
identical to an uninterrupted run (temperature 0)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aios import sdk
from aios.backends.llamacpp import LlamaCppBackend
from aios.config import KernelConfig
from aios.kernel import Kernel
from aios.syscalls import Status
from aios.types import LLMRequest

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

LONG = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[LlamaCppBackend]:
    b = LlamaCppBackend(name="embedded")
    await b.start()
    yield b
    await b.close()


def kernel_on(backend: LlamaCppBackend, scheduler: str, slice_tokens: int | None) -> Kernel:
    cfg = KernelConfig(backends=[], scheduler=scheduler, slice_tokens=slice_tokens)
    return Kernel(cfg, backends={"embedded": backend}, entry_points=False)


async def test_rr_cuts_a_long_generation_and_resumes_it_exactly(backend: LlamaCppBackend):
    async with kernel_on(backend, "fifo", None) as k:
        reference = await k.llm("ref", LLMRequest(messages=LONG, max_tokens=48))

    async with kernel_on(backend, "rr", 8) as k:
        long = k.submit_llm("writer", LLMRequest(messages=LONG, max_tokens=48))
        others = [
            k.submit_llm(f"helper-{i}", LLMRequest(messages=[{"role": "user", "content": q}], max_tokens=10))
            for i, q in enumerate(["Say hello.", "Name a color.", "Count to three."])
        ]
        result = await long.future
        other_results = await asyncio.gather(*(o.future for o in others))

    assert long.preemptions >= 2, "the long generation should have been cut while others waited"
    # Other agents ran between the cuts: some helper started after the writer's first cut.
    first_cut = long.stamp(Status.PREEMPTED)
    assert first_cut is not None and any((o.stamp(Status.RUNNING) or 0) > first_cut for o in others)
    assert result.text == reference.text
    assert "".join(result.segments) == result.text and len(result.segments) == long.preemptions + 1
    assert result.usage.completion_tokens == reference.usage.completion_tokens
    assert result.usage.recomputed_tokens == 0
    assert all(r.text for r in other_results)
    assert k.context.stats.saved == long.preemptions + sum(o.preemptions for o in others)


async def test_agents_share_the_model_through_the_sdk_with_metrics_per_agent(backend: LlamaCppBackend):
    async def one(i: int) -> str:
        with sdk.agent(f"agent-{i}"):
            r = await sdk.llm_chat(
                [{"role": "user", "content": f"Give me a number bigger than {i}."}], max_tokens=8
            )
            return r.text

    async with kernel_on(backend, "fair", 4) as k:
        texts = await asyncio.gather(*(one(i) for i in range(4)))
        stats = k.stats()
    assert all(texts)
    for i in range(4):
        m = stats["agents"][f"agent-{i}"]
        assert m["done"] == 1 and 0 < m["completion_tokens"] <= 8 and m["prompt_tokens"] > 0
