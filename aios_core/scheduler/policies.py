"""Scheduling policies: which waiting syscall runs next, and for how long.

A policy only orders; the dispatcher (``dispatcher.py``) owns the mechanism. Every policy gives a
total order (its key, then the arrival sequence number), so scheduling is deterministic.

- ``fifo``: arrival order, generations run to the end (the paper's FIFO).
- ``rr``: round-robin; a generation whose slice ends while others wait is cut and goes to the
  back of the queue (the paper's RR).
- ``priority``: lower ``priority`` value first (the vLLM convention), then arrival.
- ``fair``: least attained service first: the agent that has had the fewest tokens processed goes
  next, so one long agent cannot starve many short ones (program-level LAS).
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aios.errors import ConfigError
from aios.syscalls import Syscall


@dataclass(slots=True, frozen=True)
class TimeSlice:
    """How long a generation may run before the dispatcher may cut it (tokens and/or seconds)."""

    tokens: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens <= 0:
            raise ConfigError(f"time slice tokens must be positive, got {self.tokens}", field="slice_tokens")
        if self.seconds is not None and self.seconds <= 0:
            raise ConfigError(
                f"time slice seconds must be positive, got {self.seconds}", field="slice_seconds"
            )

    @property
    def unlimited(self) -> bool:
        """True when the slice never ends."""
        return self.tokens is None and self.seconds is None


class Policy(Protocol):
    """The ordering half of the scheduler."""

    name: str
    slice: TimeSlice

    def push(self, sc: Syscall) -> None:
        """Add a new or preempted syscall to the waiting set."""

    def pop(self, eligible: Callable[[Syscall], bool]) -> Syscall | None:
        """Remove and return the first waiting syscall for which ``eligible`` is true."""

    def remove(self, sc: Syscall) -> bool:
        """Drop a waiting syscall (cancelled or expired); False if it was not waiting."""

    def charge(self, agent: str, tokens: int) -> None:
        """Record ``tokens`` of service given to ``agent``."""

    def __len__(self) -> int:
        """How many syscalls wait."""

    def waiting(self) -> list[Syscall]:
        """The waiting syscalls, in no particular order."""


class PolicyName(enum.Enum):
    """The built-in policies."""

    FIFO = "fifo"
    RR = "rr"
    PRIORITY = "priority"
    FAIR = "fair"


class HeapPolicy:
    """A policy whose order is a key computed when a syscall is pushed."""

    name = "heap"

    def __init__(self, slice: TimeSlice | None = None):
        self.slice = slice or TimeSlice()
        self._heap: list[tuple[tuple[float, ...], int, Syscall]] = []
        self._live: set[Syscall] = set()
        self._seq = itertools.count()

    def key(self, sc: Syscall) -> tuple[float, ...]:
        """Order of ``sc``; smaller runs first."""
        return ()

    def push(self, sc: Syscall) -> None:
        """Add ``sc`` under its current key."""
        self._live.add(sc)
        heapq.heappush(self._heap, (self.key(sc), next(self._seq), sc))

    def pop(self, eligible: Callable[[Syscall], bool]) -> Syscall | None:
        """Pop the best live, eligible syscall; skipped ones go back unchanged."""
        skipped = []
        found = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            sc = entry[2]
            if sc not in self._live:
                continue  # removed while waiting: lazy deletion
            if not self._fresh(entry):
                heapq.heappush(self._heap, (self.key(sc), entry[1], sc))
                continue
            if eligible(sc):
                found = sc
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        if found is not None:
            self._live.discard(found)
        return found

    def _fresh(self, entry: tuple[tuple[float, ...], int, Syscall]) -> bool:
        return True

    def remove(self, sc: Syscall) -> bool:
        """Mark ``sc`` gone; its heap entry is dropped when reached."""
        if sc in self._live:
            self._live.discard(sc)
            return True
        return False

    def charge(self, agent: str, tokens: int) -> None:
        """Order-by-arrival policies ignore service."""

    def __len__(self) -> int:
        return len(self._live)

    def waiting(self) -> list[Syscall]:
        """The waiting syscalls."""
        return list(self._live)


class FifoPolicy(HeapPolicy):
    """First come, first served; never cuts a generation."""

    name = "fifo"

    def __init__(self, slice: TimeSlice | None = None):
        super().__init__(TimeSlice())

    def key(self, sc: Syscall) -> tuple[float, ...]:
        """Arrival order (the syscall's submission sequence)."""
        return (sc.seq,)


class RoundRobinPolicy(HeapPolicy):
    """Each turn at the back of the queue: push order is the order (a preempted call goes last)."""

    name = "rr"

    def __init__(self, slice: TimeSlice | None = None):
        super().__init__(slice or TimeSlice(tokens=32))


class PriorityPolicy(HeapPolicy):
    """Lower ``priority`` first, then arrival; optional slices let urgent work cut in."""

    name = "priority"

    def key(self, sc: Syscall) -> tuple[float, ...]:
        """(priority, arrival)."""
        return (sc.priority, sc.seq)


class FairPolicy(HeapPolicy):
    """Least attained service first: the agent with the fewest tokens processed so far."""

    name = "fair"

    def __init__(self, slice: TimeSlice | None = None):
        super().__init__(slice or TimeSlice(tokens=32))
        self.attained: dict[str, int] = {}

    def key(self, sc: Syscall) -> tuple[float, ...]:
        """(agent's attained service, arrival)."""
        return (self.attained.get(sc.agent, 0), sc.seq)

    def _fresh(self, entry: tuple[tuple[float, ...], int, Syscall]) -> bool:
        # Service changes while a syscall waits (its agent's other calls run); re-key stale entries.
        return entry[0][0] == self.attained.get(entry[2].agent, 0)

    def charge(self, agent: str, tokens: int) -> None:
        """Add to the agent's attained service."""
        self.attained[agent] = self.attained.get(agent, 0) + tokens


_POLICIES: dict[PolicyName, type[HeapPolicy]] = {
    PolicyName.FIFO: FifoPolicy,
    PolicyName.RR: RoundRobinPolicy,
    PolicyName.PRIORITY: PriorityPolicy,
    PolicyName.FAIR: FairPolicy,
}


def make_policy(name: str, slice: TimeSlice | None = None) -> HeapPolicy:
    """Build a policy by name (``fifo``, ``rr``, ``priority``, ``fair``)."""
    try:
        kind = PolicyName(name)
    except ValueError:
        raise ConfigError(
            f"unknown scheduler {name!r}; choose one of {[p.value for p in PolicyName]}",
            field="scheduler",
        ) from None
    return _POLICIES[kind](slice)
