"""Time, injected: the kernel reads a ``Clock`` so scheduling tests run on a fake one with no sleeps."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock the kernel can read and wait on."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Return once ``now() >= t``."""
        ...


class MonotonicClock:
    """The real clock."""

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep_until(self, t: float) -> None:
        """Sleep for the remaining time."""
        delay = t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """A clock that only moves when told to; waiting on it jumps it forward (virtual time)."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def now(self) -> float:
        """The current virtual time."""
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.t += seconds

    async def sleep_until(self, t: float) -> None:
        """Jump to ``t`` (if it is in the future) and let other tasks run."""
        self.t = max(self.t, t)
        await asyncio.sleep(0)
