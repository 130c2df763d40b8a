"""What an LLM backend ("core") is: one async method, declared capabilities, and the slice protocol.

A backend generates for one request at a time per call; the dispatcher runs up to ``capacity``
calls at once. Preemption is cooperative and cheap: after every generated token the backend asks
its ``SliceControl`` whether to stop, and if so returns a ``Preempted`` outcome carrying a snapshot
from which a later call continues. The dispatcher decides *when* (the policy's slice and whether
anyone is waiting); the backend decides *how* (text or model state).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from aios.types import LLMRequest, LLMResult, Usage

SnapshotKind = Literal["text", "state"]


@dataclass(slots=True, frozen=True)
class Capabilities:
    """What a backend can do; the dispatcher and the context manager read this."""

    streaming: bool = True
    #: "state": model state is saved and restored (nothing recomputed); "text": partial output is
    #: continued by recomputation; None: generations cannot be cut and run to the end.
    snapshot: SnapshotKind | None = "text"
    #: How many generations the backend runs at once (batch slots).
    capacity: int = 1
    tools: bool = True
    priority: bool = False


@dataclass(slots=True)
class Snapshot:
    """The state of an interrupted generation, enough to continue it later."""

    kind: SnapshotKind
    #: Text generated so far, over all slices.
    text: str
    #: Tokens generated so far, over all slices.
    tokens: int
    usage: Usage
    segments: list[str] = field(default_factory=list)
    #: Backend-private data (token ids, llama.cpp state); opaque to everyone else.
    data: Any = None
    #: The backend that made it; a snapshot only resumes where it was made.
    backend: str = ""

    @property
    def nbytes(self) -> int:
        """Approximate size held by this snapshot (for the context manager's accounting)."""
        size = len(self.text.encode())
        blob = getattr(self.data, "nbytes", None)
        if isinstance(blob, int):
            size += blob
        return size


@dataclass(slots=True)
class Completed:
    """The generation finished."""

    result: LLMResult


@dataclass(slots=True)
class Preempted:
    """The slice ended before the generation did; ``snapshot`` continues it."""

    snapshot: Snapshot


Outcome = Completed | Preempted


class SliceControl:
    """Tells a running generation when its time slice is over.

    ``should_yield`` is called once per generated token (possibly from a worker thread), so it
    only reads numbers. ``contended`` is a callable set by the dispatcher: a slice that is over
    with nobody waiting for the core continues, since a cut would only cost time.
    """

    __slots__ = ("clock", "contended", "max_seconds", "max_tokens", "on_token", "started", "tokens")

    def __init__(
        self,
        *,
        max_tokens: int | None = None,
        max_seconds: float | None = None,
        contended: Callable[[], bool] | None = None,
        on_token: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_tokens = max_tokens
        self.max_seconds = max_seconds
        self.clock = clock
        self.started = clock()
        self.tokens = 0
        self.contended = contended
        self.on_token = on_token

    @classmethod
    def unlimited(cls) -> SliceControl:
        """A slice that never ends (FIFO, or a backend used directly)."""
        return cls()

    def tick(self) -> bool:
        """Count one generated token; True when the generation should stop here and yield."""
        self.tokens += 1
        if self.on_token is not None:
            self.on_token()
        over = (self.max_tokens is not None and self.tokens >= self.max_tokens) or (
            self.max_seconds is not None and self.clock() - self.started >= self.max_seconds
        )
        if not over:
            return False
        return self.contended is None or self.contended()


@runtime_checkable
class Backend(Protocol):
    """An LLM backend: implement ``generate``; shared retry and timeout logic lives in the backends."""

    name: str
    model: str
    capabilities: Capabilities

    async def start(self) -> None:
        """Load the model or open the connection pool."""

    async def close(self) -> None:
        """Release everything ``start`` acquired."""

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Generate for ``request`` (continuing ``resume`` if given) until done or the slice ends."""
        ...
