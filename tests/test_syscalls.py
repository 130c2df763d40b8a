"""The syscall record: one transition table, timestamps, and a future resolved exactly once."""

from __future__ import annotations

import asyncio

import pytest

from aios.errors import BackendError, KernelInternalError
from aios.syscalls import TRANSITIONS, Status, Syscall, transition


def make(loop: asyncio.AbstractEventLoop) -> Syscall:
    sc = Syscall(agent="a", kind="llm", payload=None, future=loop.create_future())
    sc.history.append((Status.CREATED, 0.0))
    return sc


async def test_life_with_a_preemption_stamps_every_transition():
    sc = make(asyncio.get_running_loop())
    for to, t in [
        (Status.QUEUED, 1.0),
        (Status.RUNNING, 3.0),
        (Status.PREEMPTED, 4.0),
        (Status.QUEUED, 4.0),
        (Status.RUNNING, 6.5),
    ]:
        transition(sc, to, t)
    transition(sc, Status.DONE, 7.0, result="ok")
    assert sc.waiting_time == pytest.approx(2.0 + 2.5)
    assert sc.turnaround == pytest.approx(7.0)
    assert sc.preemptions == 1
    assert await sc.future == "ok"


@pytest.mark.parametrize("final", [Status.DONE, Status.FAILED, Status.CANCELLED])
async def test_final_states_are_terminal(final: Status):
    assert TRANSITIONS[final] == frozenset()
    sc = make(asyncio.get_running_loop())
    transition(sc, Status.QUEUED, 0.0)
    transition(sc, Status.RUNNING, 0.0)
    err = BackendError("x") if final is not Status.DONE else None
    transition(sc, final, 1.0, result=1, error=err)
    with pytest.raises(KernelInternalError, match="illegal syscall transition"):
        transition(sc, Status.RUNNING, 2.0)


async def test_illegal_jump_is_a_kernel_bug_not_a_silent_state():
    sc = make(asyncio.get_running_loop())
    with pytest.raises(KernelInternalError):
        transition(sc, Status.RUNNING, 0.0)  # created -> running skips the queue
    assert sc.status is Status.CREATED


async def test_a_failure_resolves_the_future_with_the_error():
    sc = make(asyncio.get_running_loop())
    transition(sc, Status.QUEUED, 0.0)
    transition(sc, Status.FAILED, 0.5, error=BackendError("boom"))
    with pytest.raises(BackendError, match="boom"):
        await sc.future
    assert sc.error is not None and sc.status.final
