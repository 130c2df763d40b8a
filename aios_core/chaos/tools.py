"""Chaos tools: kernel tools that raise, hang, stall or return garbage on a seeded schedule.

``make_chaos_tool`` builds an async tool and ``make_blocking_chaos_tool`` a synchronous one (it
runs in a worker thread, which Python cannot stop: its "hang" is a bounded sleep, and the tool
manager keeps the slot until the thread really returns). Between faults both answer
``{"label": label, "value": 2 * n}``, so a caller can check its result against a fault-free run.
The fault is drawn from the ``label`` argument: the same label always misbehaves the same way.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from aios.chaos.faults import ChaosFault, Fault, FaultLog, FaultPlan
from aios.managers.tools import Tool

SALT = "tool"
#: Faults the tools inject: raise (CRASH), hang (HANG), garbage (GARBAGE), a spike (LATENCY).
TOOL_FAULTS = frozenset({Fault.CRASH, Fault.HANG, Fault.GARBAGE, Fault.LATENCY})


class _NotJSON:
    """A value no JSON encoder accepts (what a buggy tool returns)."""

    def __repr__(self) -> str:
        return "<chaos garbage>"


def _garbage(label: str, plan: FaultPlan) -> Any:
    # Several flavours of "not JSON": an object, a non-finite float, a set, bytes.
    flavours: list[Any] = [_NotJSON(), math.nan, {1, 2}, b"\xff\xfe", {"nested": [math.inf]}]
    return flavours[int(plan.uniform(label, salt="garbage") * len(flavours))]


def make_chaos_tool(
    plan: FaultPlan,
    log: FaultLog | None = None,
    *,
    name: str = "chaos_tool",
    timeout: float = 1.0,
    spike_s: float = 0.05,
    concurrency: int = 64,
) -> Tool:
    """An async tool that misbehaves for the labels the plan picks; ``timeout`` bounds a hang."""
    plan = plan.only(TOOL_FAULTS)
    book = log if log is not None else FaultLog()

    async def chaos_tool(label: str, n: int = 0) -> Any:
        """Double ``n``, unless the chaos plan makes this label raise, hang or return garbage.

        Args:
            label: The call's name; it alone decides which fault (if any) this call gets.
            n: The number to double.
        """
        fault = plan.decide(label, salt=SALT)
        if fault is not None:
            book.record("tool", fault, label)
        if fault is Fault.CRASH:
            raise ChaosFault(f"chaos: tool failed on {label!r}")
        if fault is Fault.HANG:
            await asyncio.Event().wait()  # only the tool's timeout (cancellation) ends this
        if fault is Fault.GARBAGE:
            return _garbage(label, plan)
        if fault is Fault.LATENCY:
            await asyncio.sleep(spike_s)
        return {"label": label, "value": 2 * n}

    return Tool.from_function(chaos_tool, name=name, timeout=timeout, concurrency=concurrency)


def make_blocking_chaos_tool(
    plan: FaultPlan,
    log: FaultLog | None = None,
    *,
    name: str = "chaos_blocking_tool",
    timeout: float = 0.5,
    hang_s: float = 1.0,
    concurrency: int = 8,
) -> Tool:
    """A synchronous tool (worker thread); its "hang" sleeps ``hang_s``, past ``timeout``."""
    plan = plan.only(TOOL_FAULTS)
    book = log if log is not None else FaultLog()

    def chaos_blocking_tool(label: str, n: int = 0) -> Any:
        """Double ``n`` in a worker thread, unless the chaos plan makes this label misbehave.

        Args:
            label: The call's name; it alone decides which fault (if any) this call gets.
            n: The number to double.
        """
        fault = plan.decide(label, salt=SALT)
        if fault is not None:
            book.record("tool", fault, label)
        if fault is Fault.CRASH:
            raise ChaosFault(f"chaos: blocking tool failed on {label!r}")
        if fault is Fault.HANG:
            time.sleep(hang_s)  # a thread cannot be stopped: it stalls past the tool's timeout
        if fault is Fault.GARBAGE:
            return _garbage(label, plan)
        if fault is Fault.LATENCY:
            time.sleep(min(hang_s, 0.05))
        return {"label": label, "value": 2 * n}

    return Tool.from_function(chaos_blocking_tool, name=name, timeout=timeout, concurrency=concurrency)
