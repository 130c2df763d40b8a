"""The dispatcher's mechanism: capacity, several cores, routing, faults, deadlines, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aios.backends.sim import SimBackend
from aios.config import BackendConfig, KernelConfig
from aios.errors import (
    BackendError,
    CancelledError,
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    KernelInternalError,
    KernelNotRunningError,
    QueueFullError,
    UnknownBackendError,
)
from aios.kernel import Kernel
from aios.scheduler.policies import FairPolicy
from aios.syscalls import Status
from aios.types import LLMRequest
from tests.conftest import req, user


def sim_kernel(**backends: SimBackend) -> Kernel:
    return Kernel(KernelConfig(backends=[]), backends=backends, entry_points=False)


async def test_a_core_never_runs_more_than_its_capacity(make_kernel):
    kernel, _, _ = make_kernel("fifo", capacity=3)
    backend = kernel.backends["sim0"]
    assert isinstance(backend, SimBackend)
    async with kernel:
        calls = [kernel.submit_llm(f"a{i}", req(f"a{i}", 6)) for i in range(10)]
        assert kernel.dispatcher.in_flight() == {"sim0": 3}
        await asyncio.gather(*(c.future for c in calls))
    assert backend.max_in_flight == 3
    assert kernel.dispatcher.cores["sim0"].max_running == 3


async def test_several_cores_are_used_together_and_each_stays_within_capacity(make_kernel):
    kernel, _, _ = make_kernel("fifo", capacity=2, cores=3)
    async with kernel:
        calls = [kernel.submit_llm(f"a{i}", req(f"a{i}", 6)) for i in range(12)]
        assert sum(kernel.dispatcher.in_flight().values()) == 6
        await asyncio.gather(*(c.future for c in calls))
    for core in kernel.dispatcher.cores.values():
        assert core.served > 0 and core.max_running <= 2
    assert sorted({c.core for c in calls}) == ["sim0", "sim1", "sim2"]


async def test_an_agents_follow_up_call_lands_on_the_core_it_used_before(make_kernel):
    kernel, _, _ = make_kernel("fifo", capacity=4, cores=3)
    async with kernel:
        first = {f"a{i}": await kernel.llm(f"a{i}", req("x", 2)) for i in range(3)}
        assert first
        cores_before = {a: kernel.dispatcher._affinity[a] for a in first}
        again = [kernel.submit_llm(a, req("y", 2)) for a in first]
        await asyncio.gather(*(c.future for c in again))
    assert {c.agent: c.core for c in again} == cores_before


async def test_the_routing_table_maps_model_names_to_cores_and_is_visible_in_metrics():
    kernel = Kernel(
        KernelConfig(
            backends=[BackendConfig("big", "sim"), BackendConfig("small", "sim")],
            routes={"gpt-4o-mini": "small"},
        ),
        entry_points=False,
    )
    async with kernel:
        r1 = await kernel.llm("a", req("q", 3, model="gpt-4o-mini"))
        r2 = await kernel.llm("a", req("q", 3, model="big"))
        await kernel.llm("b", req("q", 3, model="unmapped-model"))
    assert (r1.backend, r2.backend) == ("small", "big")
    routes = {(r["model"], r["core"]) for r in kernel.stats()["routes"]}
    assert ("gpt-4o-mini", "small") in routes and ("big", "big") in routes
    assert any(m == "unmapped-model" for m, _ in routes)


async def test_a_raising_backend_gives_its_caller_a_typed_error_and_others_still_finish():
    def fail(request: LLMRequest) -> BaseException | None:
        return RuntimeError("GPU on fire") if "bad" in request.messages[0]["content"] else None

    kernel = sim_kernel(sim=SimBackend(capacity=2, fail=fail))
    async with kernel:
        good = [kernel.submit_llm(f"g{i}", req("good", 5)) for i in range(4)]
        bad = kernel.submit_llm("b", req("bad", 5))
        with pytest.raises(BackendError, match="GPU on fire") as info:
            await bad.future
        results = await asyncio.gather(*(g.future for g in good))
    assert info.value.agent == "b" and info.value.syscall_id == bad.id
    assert bad.status is Status.FAILED and all(r.usage.completion_tokens == 5 for r in results)
    assert kernel.metrics.errors["BackendError"] == 1


async def test_a_bug_in_the_policy_fails_that_call_not_the_kernel(make_kernel):
    class BrokenFair(FairPolicy):
        def charge(self, agent: str, tokens: int) -> None:
            if agent == "victim":
                raise ZeroDivisionError("policy bug")
            super().charge(agent, tokens)

    backends = {"sim": SimBackend(capacity=1)}
    kernel = Kernel(KernelConfig(backends=[]), backends=backends, policy=BrokenFair(), entry_points=False)
    async with kernel:
        victim = kernel.submit_llm("victim", req("v", 3))
        other = kernel.submit_llm("other", req("o", 3))
        with pytest.raises(KernelInternalError, match="ZeroDivisionError"):
            await victim.future
        assert (await other.future).text == "t0 t1 t2"


async def test_a_passed_deadline_fails_the_call_promptly_and_frees_the_core():
    kernel = sim_kernel(sim=SimBackend(capacity=1, token_time=0.01))
    async with kernel:
        slow = kernel.submit_llm("slow", req("slow", 1000), timeout=0.1)
        queued = kernel.submit_llm("queued", req("queued", 1000), timeout=0.05)
        after = kernel.submit_llm("after", req("after", 3))
        with pytest.raises(DeadlineExceededError):
            await queued.future
        with pytest.raises(DeadlineExceededError):
            await slow.future
        assert (await after.future).usage.completion_tokens == 3
    assert (slow.turnaround or 0) < 1.0 and queued.status is Status.FAILED


async def test_a_cancelled_caller_cancels_its_syscall_and_the_core_serves_the_next():
    kernel = sim_kernel(sim=SimBackend(capacity=1, token_time=0.005))
    async with kernel:
        task = asyncio.create_task(kernel.llm("impatient", req("long", 10_000)))
        waiting = kernel.submit_llm("next", req("next", 3))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await waiting.future).text == "t0 t1 t2"
    sc = next(s for s in kernel.metrics.recent if s.agent == "impatient")
    assert sc.status == "cancelled" and sc.error == "CancelledError"


async def test_stopping_the_kernel_answers_every_caller_with_a_clear_error():
    kernel = sim_kernel(sim=SimBackend(capacity=2, token_time=0.01))
    await kernel.start()
    calls = [kernel.submit_llm(f"a{i}", req("x", 10_000)) for i in range(6)]
    await asyncio.sleep(0.03)
    await kernel.stop()
    for c in calls:
        with pytest.raises(CancelledError, match="shutting down"):
            await c.future
    with pytest.raises(KernelNotRunningError):
        kernel.submit_llm("late", req("x"))


async def test_a_full_queue_refuses_instead_of_growing():
    kernel = Kernel(
        KernelConfig(backends=[], max_queued=3),
        backends={"sim": SimBackend(capacity=1, token_time=0.01)},
        entry_points=False,
    )
    async with kernel:
        calls = [kernel.submit_llm(f"a{i}", req("x", 5)) for i in range(4)]  # 1 running + 3 queued
        with pytest.raises(QueueFullError) as info:
            kernel.submit_llm("overflow", req("x", 5))
        assert info.value.retryable
        await asyncio.gather(*(c.future for c in calls))


@pytest.mark.parametrize(
    ("messages", "params", "field"),
    [
        ([], {}, "messages"),
        ("hello", {}, "messages"),
        ([{"role": "wizard", "content": "x"}], {}, "messages[0].role"),
        ([{"role": "user"}], {}, "messages[0].content"),
        ([{"role": "user", "content": 5}], {}, "messages[0].content"),
        (user("x"), {"max_tokens": -1}, "max_tokens"),
        (user("x"), {"temperature": 9.0}, "temperature"),
        (user("x"), {"stop": [""]}, "stop"),
        (user("x"), {"tools": [{"type": "function"}]}, "tools[0]"),
        (user("x"), {"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        (user("x"), {"response_format": {"type": "yaml"}}, "response_format"),
    ],
)
async def test_malformed_requests_are_refused_with_the_field_named(messages: Any, params: Any, field: str):
    kernel = sim_kernel(sim=SimBackend())
    async with kernel:
        with pytest.raises(InvalidRequestError) as info:
            await kernel.llm("a", LLMRequest(messages=messages, **params))
        assert info.value.field == field
        assert (await kernel.llm("a", req("still serving", 2))).text == "t0 t1"


def test_an_unknown_backend_kind_is_a_config_error_listing_the_known_ones():
    with pytest.raises(UnknownBackendError, match="llamacpp"):
        Kernel(KernelConfig(backends=[BackendConfig("x", "tpu-magic")]), entry_points=False)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"backends": []}, "backends"),
        ({"scheduler": "lottery"}, "scheduler"),
        ({"slice_tokens": 0}, "slice_tokens"),
        ({"routes": {"m": "nowhere"}}, "routes.m"),
        ({"quotas": {"a": -5}}, "quotas.a"),
        ({"max_queued": "many"}, "max_queued"),
    ],
)
def test_bad_config_names_the_setting(config: dict[str, Any], field: str):
    base: dict[str, Any] = {"backends": [BackendConfig("sim", "sim")]}
    base.update(config)
    with pytest.raises(ConfigError) as info:
        Kernel(KernelConfig(**base), entry_points=False)
    assert info.value.field == field
