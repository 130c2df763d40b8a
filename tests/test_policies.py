"""Scheduling policies on a fake clock: each token advances virtual time, nothing sleeps."""

from __future__ import annotations

import asyncio
from itertools import groupby

from aios.scheduler.policies import TimeSlice
from aios.syscalls import Status
from tests.conftest import req


def runs(trace: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Collapse a token trace into (agent label, tokens in a row)."""
    return [(label, len(list(group))) for label, group in groupby(label for label, _ in trace)]


async def test_fifo_serves_in_arrival_order_without_interleaving(make_kernel):
    kernel, _, trace = make_kernel("fifo")
    async with kernel:
        calls = [kernel.submit_llm(f"a{i}", req(f"a{i}", 10)) for i in range(4)]
        await asyncio.gather(*(c.future for c in calls))
    assert runs(trace) == [("a0", 10), ("a1", 10), ("a2", 10), ("a3", 10)]
    assert [c.preemptions for c in calls] == [0, 0, 0, 0]


async def test_round_robin_interleaves_slices_and_resumes_where_it_stopped(make_kernel):
    kernel, _, trace = make_kernel("rr", slice_tokens=4)
    async with kernel:
        calls = [kernel.submit_llm(f"a{i}", req(f"a{i}", 10)) for i in range(3)]
        results = await asyncio.gather(*(c.future for c in calls))
    assert runs(trace) == [("a0", 4), ("a1", 4), ("a2", 4)] * 2 + [("a0", 2), ("a1", 2), ("a2", 2)]
    # Resumed generations continue: every token index appears once, in order, per agent.
    for i in range(3):
        assert [n for label, n in trace if label == f"a{i}"] == list(range(10))
    for r in results:
        assert r.text == " ".join(f"t{n}" for n in range(10))
        assert "".join(r.segments) == r.text and len(r.segments) == 3
        assert r.usage.completion_tokens == 10
    assert [c.preemptions for c in calls] == [2, 2, 2]
    assert kernel.context.stats.saved == 6 and kernel.context.stats.held == 0


async def test_round_robin_does_not_cut_when_nobody_waits(make_kernel):
    kernel, _, trace = make_kernel("rr", slice_tokens=4)
    async with kernel:
        sc = kernel.submit_llm("solo", req("solo", 30))
        await sc.future
    assert sc.preemptions == 0 and runs(trace) == [("solo", 30)]


async def test_fair_lets_twenty_short_agents_finish_before_the_long_one_resumes(make_kernel):
    kernel, _, trace = make_kernel("fair", slice_tokens=16)
    async with kernel:
        long = kernel.submit_llm("long", req("long", 200))
        while len(trace) < 5:  # the long agent is generating
            await asyncio.sleep(0)
        shorts = [kernel.submit_llm(f"s{i}", req(f"s{i}", 8)) for i in range(20)]
        await asyncio.gather(long.future, *(s.future for s in shorts))
    order = runs(trace)
    assert order[0] == ("long", 16)
    assert order[1:21] == [(f"s{i}", 8) for i in range(20)]
    assert order[21][0] == "long"
    long_done = long.stamp(Status.DONE)
    assert long_done is not None and all((s.stamp(Status.DONE) or 0) < long_done for s in shorts)


async def test_fifo_makes_the_short_agents_wait_for_the_long_one(make_kernel):
    kernel, _, trace = make_kernel("fifo")
    async with kernel:
        long = kernel.submit_llm("long", req("long", 200))
        while len(trace) < 5:
            await asyncio.sleep(0)
        shorts = [kernel.submit_llm(f"s{i}", req(f"s{i}", 8)) for i in range(20)]
        await asyncio.gather(long.future, *(s.future for s in shorts))
    assert runs(trace)[0] == ("long", 200)
    assert min(s.waiting_time for s in shorts) > 1.9  # 195 tokens x 10 ms of virtual time


async def test_fair_ranks_agents_by_attained_service_not_by_call(make_kernel):
    kernel, _, trace = make_kernel("fair", slice_tokens=100)
    async with kernel:
        blocker = kernel.submit_llm("busy", req("busy-1", 50))
        await asyncio.sleep(0)
        later = [
            kernel.submit_llm("busy", req("busy-2", 10)),
            kernel.submit_llm("idle", req("idle-1", 10)),
        ]
        await asyncio.gather(blocker.future, *(c.future for c in later))
    # "busy" already had 50+ tokens of service, so the idle agent goes first despite arriving later.
    assert [label for label, _ in runs(trace)] == ["busy-1", "idle-1", "busy-2"]


async def test_priority_serves_lower_value_first_then_arrival(make_kernel):
    kernel, _, trace = make_kernel("priority")
    async with kernel:
        first = kernel.submit_llm("x", req("blocker", 5))
        calls = [
            kernel.submit_llm("p5", req("p5", 3), priority=5),
            kernel.submit_llm("p1", req("p1", 3), priority=1),
            kernel.submit_llm("p3a", req("p3a", 3), priority=3),
            kernel.submit_llm("p3b", req("p3b", 3), priority=3),
        ]
        await asyncio.gather(first.future, *(c.future for c in calls))
    assert [label for label, _ in runs(trace)] == ["blocker", "p1", "p3a", "p3b", "p5"]


async def test_quota_delays_an_agent_over_its_rate_but_never_drops_its_calls(make_kernel):
    # 60 tokens/minute; each call costs 5 prompt + 20 output = 25 tokens.
    kernel, clock, _ = make_kernel("fifo", quotas={"metered": 60})
    async with kernel:
        metered = [kernel.submit_llm("metered", req("m", 20)) for _ in range(4)]
        free = [kernel.submit_llm("free", req("f", 20)) for _ in range(2)]
        await asyncio.gather(*(c.future for c in metered + free))
    starts = [c.stamp(Status.RUNNING) or 0.0 for c in metered]
    # Three calls fit the first minute's bucket (60 -> 35 -> 10 -> about -15); the fourth must wait
    # until about 15 tokens have refilled at 1 token/s: ~15 s after the third call was charged.
    third_done = metered[2].stamp(Status.DONE) or 0.0
    assert starts[:3] == sorted(starts[:3]) and starts[2] < 1.0
    assert third_done + 13.5 <= starts[3] <= third_done + 15.5
    assert all(c.status is Status.DONE for c in metered + free)
    # The unmetered agent was not held back behind the quota wait.
    assert max(c.stamp(Status.DONE) or 0.0 for c in free) < starts[3]
    assert clock.now() >= starts[3]


async def test_round_robin_slices_can_be_counted_in_seconds(make_kernel):
    kernel, _, trace = make_kernel("rr")
    kernel.policy.slice = TimeSlice(seconds=0.045)  # ends after the 5th token of 10 ms virtual time
    async with kernel:
        calls = [kernel.submit_llm(f"a{i}", req(f"a{i}", 10)) for i in range(2)]
        await asyncio.gather(*(c.future for c in calls))
    assert runs(trace) == [("a0", 5), ("a1", 5), ("a0", 5), ("a1", 5)]
