"""The chaos components themselves: seeded plans, the chaos backend, the HTTP stub, the chaos tools.

Each fault is checked end to end through a kernel: the caller gets the typed error the fault
stands for (or the unchanged answer, for a latency spike), the other agents on the same core get
their answers, and nothing is left running.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aios.backends.openai_backend import OpenAIBackend
from aios.backends.sim import SimBackend
from aios.chaos import ChaosBackend, ChaosLLMServer, Fault, FaultLog, FaultPlan, make_chaos_tool
from aios.chaos.tools import make_blocking_chaos_tool
from aios.config import KernelConfig, config_from_mapping
from aios.errors import (
    AIOSError,
    BackendError,
    BackendTimeoutError,
    ConfigError,
    DeadlineExceededError,
    KernelInternalError,
    RateLimitedError,
    StreamInterruptedError,
)
from aios.kernel import Kernel
from aios.scheduler.policies import TimeSlice, make_policy
from aios.types import LLMRequest

pytestmark = pytest.mark.timeout(60)


def ask(label: str, max_tokens: int = 8, model: str | None = None) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": label}], max_tokens=max_tokens, model=model)


def answer(n: int) -> str:
    return " ".join(f"t{i}" for i in range(n))


def only(fault: Fault, scope: str = "bad") -> FaultPlan:
    """Every call whose label starts with ``scope`` gets ``fault``; no other call gets anything."""
    return FaultPlan(seed=1, rates={fault: 1.0}, scope=scope)


# --- plans ------------------------------------------------------------------------------------


def test_a_plan_gives_the_same_fault_to_the_same_key_whatever_the_order() -> None:
    plan = FaultPlan(seed=42, rates={Fault.RATE_LIMIT: 0.2, Fault.HANG: 0.1})
    keys = [f"agent-{i}/call" for i in range(2000)]
    forward = [plan.decide(k) for k in keys]
    backward = [plan.decide(k) for k in reversed(keys)][::-1]
    assert forward == backward
    share = sum(f is Fault.RATE_LIMIT for f in forward) / len(keys)
    assert 0.15 < share < 0.25
    assert [FaultPlan(seed=43, rates=plan.rates).decide(k) for k in keys] != forward


def test_a_plan_never_faults_keys_outside_its_scope_or_kinds() -> None:
    plan = FaultPlan(seed=3, rates={Fault.CRASH: 1.0}, scope="x-")
    assert plan.decide("x-1/0") is Fault.CRASH
    assert plan.decide("c-1/0") is None
    assert plan.only({Fault.HANG}).decide("x-1/0") is None


@pytest.mark.parametrize(
    ("rates", "field"),
    [({"rate_limit": 0.7, "hang": 0.7}, "rates"), ({"nope": 0.1}, "rates.nope"), ({"hang": -1}, "rates"),
     ({"hang": math.nan}, "rates"), ("hang", "rates")],
)  # fmt: skip
def test_a_bad_plan_is_a_config_error_naming_the_field(rates: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FaultPlan.from_options(seed=1, rates=rates)
    assert info.value.field == field


# --- the chaos backend through a kernel ---------------------------------------------------------


@pytest.fixture
async def chaos_kernel(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Kernel, FaultLog]]:
    fault: Fault = request.param
    log = FaultLog()
    backend = ChaosBackend(
        name="chaos",
        inner=SimBackend(name="chaos", capacity=4, token_time=0.001),
        plan=only(fault),
        log=log,
        spike_s=0.05,
    )
    async with Kernel(KernelConfig(backends=[]), backends={"chaos": backend}, entry_points=False) as k:
        yield k, log


@pytest.mark.parametrize(
    ("chaos_kernel", "error", "status"),
    [
        (Fault.RATE_LIMIT, RateLimitedError, 429),
        (Fault.SERVER_ERROR, BackendError, 500),
        (Fault.UNAVAILABLE, BackendError, 503),
        (Fault.DROP_BEFORE, StreamInterruptedError, None),
        (Fault.DROP_DURING, StreamInterruptedError, None),
        (Fault.CRASH, BackendError, None),
        (Fault.MALFORMED, KernelInternalError, None),
        (Fault.HANG, DeadlineExceededError, None),
    ],
    indirect=["chaos_kernel"],
)
async def test_each_backend_fault_reaches_its_caller_as_a_typed_error_and_spares_the_others(
    chaos_kernel: tuple[Kernel, FaultLog], error: type[AIOSError], status: int | None
) -> None:
    kernel, log = chaos_kernel
    good = [kernel.submit_llm(f"good-{i}", ask(f"good {i}")) for i in range(6)]
    deltas: list[str] = []
    bad = kernel.submit_llm("unlucky", ask("bad one", 12), timeout=1.0, on_delta=deltas.append)
    with pytest.raises(error) as info:
        await bad.future
    assert info.value.agent == "unlucky"
    if status is not None:
        assert isinstance(info.value, BackendError) and info.value.status_code == status
    if error is StreamInterruptedError:
        # Before output a retry would be safe; after output it would deliver tokens twice.
        assert info.value.retryable is (not deltas)
    assert [r.text for r in await asyncio.gather(*(g.future for g in good))] == [answer(8)] * 6
    assert sum(log.summary().values()) == 1 and log.hit("bad one")
    assert kernel.dispatcher.in_flight() == {"chaos": 0}


@pytest.mark.parametrize("chaos_kernel", [Fault.LATENCY], indirect=True)
async def test_a_latency_spike_delays_the_answer_but_does_not_change_it(
    chaos_kernel: tuple[Kernel, FaultLog],
) -> None:
    kernel, log = chaos_kernel
    start = time.monotonic()
    result = await kernel.llm("slow", ask("bad but only slow"))
    assert result.text == answer(8)
    assert time.monotonic() - start >= 0.05
    assert log.summary() == {"backend.latency": 1}


async def test_a_drop_during_the_stream_lands_in_a_resumed_slice_too() -> None:
    plan = only(Fault.DROP_DURING)
    label = next(f"bad long {i}" for i in range(100) if plan.uniform(f"bad long {i}", salt="backend") > 0.5)
    inner = SimBackend(name="c", token_time=0.001)
    rr = Kernel(
        KernelConfig(backends=[]),
        backends={"c": ChaosBackend(name="c", inner=inner, plan=plan)},
        policy=make_policy("rr", TimeSlice(tokens=2)),
        entry_points=False,
    )
    async with rr:
        # Two calls on one slot cut each other every 2 tokens; this drop is planned past token 12.
        deltas: list[str] = []
        bad = rr.submit_llm("a", ask(label, 24), on_delta=deltas.append)
        other = rr.submit_llm("b", ask("fine long", 24))
        with pytest.raises(StreamInterruptedError) as info:
            await bad.future
        assert (await other.future).text == answer(24)
    assert bad.preemptions >= 5 and len(deltas) > 10
    assert info.value.retryable is False


def test_the_chaos_kind_is_registered_and_configured_from_a_table() -> None:
    cfg = config_from_mapping(
        {
            "backends": [
                {"name": "c", "kind": "chaos", "seed": 5, "rates": {"rate_limit": 0.5},
                 "inner": {"kind": "sim", "capacity": 3}},
            ]
        }
    )  # fmt: skip
    kernel = Kernel(cfg, entry_points=False)
    backend = kernel.backends["c"]
    assert isinstance(backend, ChaosBackend)
    assert backend.capabilities.capacity == 3
    assert backend.plan.rates == {Fault.RATE_LIMIT: 0.5}


@pytest.mark.parametrize(
    ("options", "field"),
    [({"inner": {"kind": "nope"}}, "inner.kind"), ({"inner": "sim"}, "inner.kind"),
     ({"rates": {"boom": 1}}, "rates.boom"), ({"spike_s": -1}, "spike_s"),
     ({"inner": {"kind": "sim", "capacity": 0}}, "capacity")],
)  # fmt: skip
def test_a_bad_chaos_backend_table_is_a_config_error_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    cfg = config_from_mapping({"backends": [{"name": "c", "kind": "chaos", **options}]})
    with pytest.raises(ConfigError) as info:
        Kernel(cfg, entry_points=False)
    assert field in (info.value.field or "")


# --- the HTTP stub and the openai backend ---------------------------------------------------------


async def short_sleep(seconds: float) -> None:
    await asyncio.sleep(min(seconds, 0.01))


@pytest.fixture
async def http_kernel(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Kernel, ChaosLLMServer]]:
    fault, persistent = request.param
    async with ChaosLLMServer(plan=only(fault), persistent=persistent, spike_s=0.05) as stub:
        backend = OpenAIBackend(
            name="http",
            base_url=stub.base_url,
            model="m",
            capacity=4,
            timeout=0.5,
            max_retries=2,
            sleep=short_sleep,  # the backoff is counted, not waited out in full
        )
        async with Kernel(KernelConfig(backends=[]), backends={"http": backend}, entry_points=False) as k:
            yield k, stub


@pytest.mark.parametrize(
    ("http_kernel", "retries"),
    [
        ((Fault.RATE_LIMIT, 0.0), 1),
        ((Fault.SERVER_ERROR, 0.0), 1),
        ((Fault.UNAVAILABLE, 0.0), 1),
        ((Fault.CRASH, 0.0), 1),
        ((Fault.DROP_BEFORE, 0.0), 1),
        ((Fault.HANG, 0.0), 1),
        ((Fault.LATENCY, 0.0), 0),
    ],
    indirect=["http_kernel"],
)
async def test_a_transient_http_fault_before_output_is_retried_and_the_answer_is_exact(
    http_kernel: tuple[Kernel, ChaosLLMServer], retries: int
) -> None:
    kernel, stub = http_kernel
    result = await kernel.llm("a", ask("bad transient", 10), timeout=10)
    assert result.text == answer(10)
    assert stub.retries() == retries
    assert stub.retried_after_output() == []


@pytest.mark.parametrize(
    ("http_kernel", "error", "attempts"),
    [
        ((Fault.RATE_LIMIT, 1.0), RateLimitedError, 3),
        ((Fault.UNAVAILABLE, 1.0), BackendError, 3),
        ((Fault.CRASH, 1.0), BackendError, 3),
        ((Fault.DROP_BEFORE, 1.0), BackendError, 3),
        ((Fault.HANG, 1.0), BackendTimeoutError, 3),
        ((Fault.DROP_DURING, 1.0), StreamInterruptedError, 1),
    ],
    indirect=["http_kernel"],
)
async def test_a_persistent_http_fault_ends_in_a_typed_error_after_the_allowed_retries_only(
    http_kernel: tuple[Kernel, ChaosLLMServer], error: type[AIOSError], attempts: int
) -> None:
    kernel, stub = http_kernel
    with pytest.raises(error):
        await kernel.llm("a", ask("bad persistent", 10), timeout=10)
    assert len(stub.records["bad persistent"]) == attempts
    assert stub.retried_after_output() == []
    assert (await kernel.llm("b", ask("fine", 5))).text == answer(5)


@pytest.mark.parametrize("http_kernel", [(Fault.MALFORMED, 1.0)], indirect=True)
async def test_a_malformed_stream_is_retried_only_if_nothing_was_streamed_yet(
    http_kernel: tuple[Kernel, ChaosLLMServer],
) -> None:
    kernel, stub = http_kernel
    outcomes = []
    for i in range(12):
        try:
            outcomes.append((await kernel.llm("a", ask(f"bad malformed {i}", 10), timeout=10)).text)
        except StreamInterruptedError as exc:
            outcomes.append(f"interrupted retryable={exc.retryable}")
    before = [label for label, a in stub.records.items() if a[0].chunks_sent == 0]
    after = [label for label, a in stub.records.items() if a[0].chunks_sent > 0]
    assert before and after  # the seed puts some bad JSON before output and some after
    assert all(len(stub.records[label]) == 3 for label in before)  # retried, and failed each time
    assert all(len(stub.records[label]) == 1 for label in after)  # never retried
    assert stub.retried_after_output() == []
    # The error says whether the call could safely be sent again: only if nothing was streamed.
    assert outcomes.count("interrupted retryable=True") == len(before)
    assert outcomes.count("interrupted retryable=False") == len(after)
    assert len(outcomes) == 12


async def test_a_preempted_http_call_resumes_through_the_stub_exactly() -> None:
    async with ChaosLLMServer(token_delay=0.002) as stub:
        rr = Kernel(
            KernelConfig(backends=[]),
            backends={"h": OpenAIBackend(name="h", base_url=stub.base_url, model="m", capacity=1)},
            policy=make_policy("rr", TimeSlice(tokens=3)),
            entry_points=False,
        )
        async with rr:
            calls = [rr.submit_llm(f"a{i}", ask(f"fine {i}", 12)) for i in range(3)]
            results = await asyncio.gather(*(c.future for c in calls))
    assert [r.text for r in results] == [answer(12)] * 3
    assert all(c.preemptions >= 1 for c in calls)
    # Each resumed slice asked for the answer from where the last one stopped: no retries.
    assert [a.offset for a in stub.records["fine 0"]] == sorted({a.offset for a in stub.records["fine 0"]})
    assert stub.retries() == 0


# --- chaos tools ------------------------------------------------------------------------------


async def test_chaos_tools_fail_as_results_not_as_crashes_and_the_kernel_keeps_serving(
    tmp_path: Path,
) -> None:
    log = FaultLog()
    plan = FaultPlan(seed=9, rates={Fault.CRASH: 0.25, Fault.HANG: 0.25, Fault.GARBAGE: 0.25})
    kernel = Kernel(
        KernelConfig(backends=[], data_dir=str(tmp_path), audit_file=False),
        backends={"sim": SimBackend(name="sim")},
        entry_points=False,
    )
    kernel.services.tools.register(make_chaos_tool(plan, log, timeout=0.3))
    kernel.services.tools.register(make_blocking_chaos_tool(plan, log, timeout=0.2, hang_s=0.4))
    async with kernel:
        kinds: dict[str, set[str]] = {}
        for name in ("chaos_tool", "chaos_blocking_tool"):
            for i in range(24):
                label = f"{name}-{i}"
                start = time.monotonic()
                res = await kernel.syscall(
                    "a", "tool", "call", name=name, arguments={"label": label, "n": i}, timeout=5
                )
                assert time.monotonic() - start < 2.0
                fault = plan.decide(label, salt="tool")
                expected = {
                    None: "ok", Fault.CRASH: "ChaosFault", Fault.HANG: "ToolTimeoutError",
                    Fault.GARBAGE: "ToolResultError",
                }[fault]  # fmt: skip
                got = "ok" if res.ok else res.error.type
                assert got == expected, label
                if res.ok:
                    assert res.value == {"label": label, "value": 2 * i}
                kinds.setdefault(name, set()).add(got)
        assert kinds["chaos_tool"] == {"ok", "ChaosFault", "ToolTimeoutError", "ToolResultError"}
        assert (await kernel.llm("b", ask("still here", 3))).text == answer(3)
