"""The syscall record: one status enum, one transition table, one function that applies a transition.

A syscall's life is ``created → queued → running → (preempted → queued)* → done | failed |
cancelled``. Every transition is stamped with the kernel clock, so waiting time, turnaround and
time to first token fall out of the record; the caller's future is resolved exactly once, by the
transition into a final state.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aios.errors import AIOSError, KernelInternalError
from aios.types import LLMRequest, LLMResult


class Status(enum.Enum):
    """Where a syscall is in its life."""

    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    PREEMPTED = "preempted"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True for done, failed and cancelled."""
        return self in _FINAL


_FINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})

#: The only legal moves. Anything else is a kernel bug and raises ``KernelInternalError``.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.QUEUED, Status.FAILED, Status.CANCELLED}),
    Status.QUEUED: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.PREEMPTED, Status.DONE, Status.FAILED, Status.CANCELLED}),
    Status.PREEMPTED: frozenset({Status.QUEUED, Status.FAILED, Status.CANCELLED}),
    Status.DONE: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}

_ids = itertools.count(1)


def _next_id() -> str:
    # itertools.count is atomic under the GIL, so ids stay unique across kernels and threads.
    return f"sc-{next(_ids)}"


@dataclass(slots=True, eq=False)
class Syscall:
    """One request from one agent to the kernel, with its whole history."""

    agent: str
    kind: str
    payload: Any
    future: asyncio.Future[Any]
    priority: int = 0
    deadline: float | None = None
    core: str | None = None
    id: str = field(default_factory=_next_id)
    status: Status = Status.CREATED
    #: (status, kernel-clock time) for every transition, in order.
    history: list[tuple[Status, float]] = field(default_factory=list)
    first_token_at: float | None = None
    preemptions: int = 0
    #: Tokens processed for this syscall so far (prompt + generated), for the fair policy.
    attained: int = 0
    snapshot: Any = None
    error: AIOSError | None = None
    #: Called with each text delta when the caller asked for a stream.
    on_delta: Callable[[str], None] | None = None
    #: Submission order, set by the dispatcher; the tie-breaker of every policy.
    seq: int = 0
    #: The cores allowed to serve this syscall (from the routing table).
    candidates: tuple[str, ...] = ()

    @property
    def request(self) -> LLMRequest:
        """The LLM request of an ``llm`` syscall."""
        assert isinstance(self.payload, LLMRequest)
        return self.payload

    def stamp(self, status: Status) -> float | None:
        """The time of the first transition into ``status``, or None."""
        for st, t in self.history:
            if st is status:
                return t
        return None

    def last_stamp(self, status: Status) -> float | None:
        """The time of the latest transition into ``status``, or None."""
        for st, t in reversed(self.history):
            if st is status:
                return t
        return None

    @property
    def created_at(self) -> float:
        """When the syscall was created."""
        return self.history[0][1]

    @property
    def waiting_time(self) -> float:
        """Total time spent queued (all queued → running gaps summed)."""
        total, since = 0.0, None
        for st, t in self.history:
            if st is Status.QUEUED:
                since = t
            elif since is not None:
                total += t - since
                since = None
        return total

    @property
    def turnaround(self) -> float | None:
        """Time from creation to the final state, or None while in flight."""
        return self.history[-1][1] - self.created_at if self.status.final else None

    @property
    def time_to_first_token(self) -> float | None:
        """Time from creation to the first generated token, if known."""
        return None if self.first_token_at is None else self.first_token_at - self.created_at


def transition(
    sc: Syscall, to: Status, now: float, *, result: Any = None, error: AIOSError | None = None
) -> None:
    """Move ``sc`` to ``to`` at time ``now``; a final move resolves the caller's future."""
    if to not in TRANSITIONS[sc.status]:
        raise KernelInternalError(
            f"illegal syscall transition {sc.status.value} -> {to.value}",
            syscall_id=sc.id,
            agent=sc.agent,
        )
    sc.status = to
    sc.history.append((to, now))
    if to is Status.PREEMPTED:
        sc.preemptions += 1
    if not to.final:
        return
    fut = sc.future
    if fut.done():
        return  # the caller cancelled its await; the record is still closed properly
    if to is Status.DONE:
        fut.set_result(result)
    else:
        assert error is not None, "a failed or cancelled syscall needs an error"
        sc.error = error
        fut.set_exception(error)
        # The error is also in the record and the metrics; a caller that went away (cancelled its
        # await) must not make asyncio log "exception was never retrieved".
        fut.exception()


@dataclass(slots=True)
class SyscallStats:
    """A finished syscall's numbers, kept by the metrics collector after the record is gone."""

    id: str
    agent: str
    kind: str
    core: str | None
    status: str
    waiting: float
    turnaround: float
    ttft: float | None
    preemptions: int
    prompt_tokens: int
    completion_tokens: int
    error: str | None

    @classmethod
    def of(cls, sc: Syscall) -> SyscallStats:
        """Summarize a finished syscall."""
        usage = None
        if sc.status is Status.DONE and sc.future.done() and not sc.future.cancelled():
            res = sc.future.result()
            usage = res.usage if isinstance(res, LLMResult) else None
        return cls(
            id=sc.id,
            agent=sc.agent,
            kind=sc.kind,
            core=sc.core,
            status=sc.status.value,
            waiting=sc.waiting_time,
            turnaround=sc.turnaround or 0.0,
            ttft=sc.time_to_first_token,
            preemptions=sc.preemptions,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            error=type(sc.error).__name__ if sc.error else None,
        )
