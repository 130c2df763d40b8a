"""The ``chaos`` backend: wraps another backend (or a simulated one) and injects seeded faults.

Faults reach the dispatcher the way a real backend's would: as the kernel's typed errors
(``RateLimitedError``, ``BackendError`` with 500/503, ``StreamInterruptedError``), as a foreign
exception (``ChaosFault``, a stand-in for a bug), as a response that is not an ``Outcome`` at all,
as a latency spike, as a drop after some tokens were already streamed to the caller, or as a
generation that never ends. Which call gets which fault is a pure function of the plan's seed and
the call's key (by default the text of the last user message), see ``aios.chaos.faults``.

Faults "before output" (errors, latency, hang, malformed) apply to a call's first slice only; a
drop "during" counts tokens over all slices, so it also lands in a slice resumed after preemption.
This backend never retries: the kernel's retry logic lives in the backends that talk to servers
(the ``openai`` backend), which ``aios.chaos.http_stub`` exercises over real HTTP.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from aios.backends.base import Backend, Outcome, SliceControl, Snapshot
from aios.backends.sim import SimBackend
from aios.chaos.faults import LLM_CALL_FAULTS, ChaosFault, Fault, FaultLog, FaultPlan
from aios.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    RateLimitedError,
    StreamInterruptedError,
)
from aios.types import LLMRequest, message_text

#: Faults this backend injects; others in a plan are ignored here.
BACKEND_FAULTS = LLM_CALL_FAULTS
SALT = "backend"


def last_user_text(request: LLMRequest) -> str:
    """The default fault key: the text of the request's last user message."""
    for msg in reversed(request.messages):
        if msg.get("role") == "user":
            return message_text(msg)
    return ""


class _Dropped(Exception):
    """Raised from inside the inner backend's token loop to cut its stream (private)."""


class _DropAfter(SliceControl):
    """The dispatcher's slice control, plus a connection that breaks after ``left`` more tokens."""

    __slots__ = ("_inner", "_left")

    def __init__(self, inner: SliceControl, left: int):
        super().__init__(
            max_tokens=inner.max_tokens,
            max_seconds=inner.max_seconds,
            contended=inner.contended,
            clock=inner.clock,
        )
        self.started = inner.started
        self._inner = inner
        self._left = left

    def tick(self) -> bool:
        """Count the token on the real control; break the stream once the budget is spent."""
        over = self._inner.tick()
        self.tokens = self._inner.tokens
        self._left -= 1
        if self._left <= 0:
            raise _Dropped
        return over


class ChaosBackend:
    """A backend that misbehaves on a seeded schedule; between faults it is exactly ``inner``."""

    def __init__(
        self,
        *,
        name: str = "chaos",
        inner: Backend | None = None,
        plan: FaultPlan | None = None,
        log: FaultLog | None = None,
        spike_s: float = 0.2,
        hang_s: float | None = None,
        key: Callable[[LLMRequest], str] = last_user_text,
    ):
        if not isinstance(name, str) or not name:
            raise ConfigError("name must be a non-empty string", field="name")
        for field_name, value in (("spike_s", spike_s), ("hang_s", hang_s)):
            if value is None and field_name == "hang_s":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{field_name} must be a finite number, got {value!r}", field=field_name)
            if value < 0:
                raise ConfigError(f"{field_name} must be >= 0, got {value!r}", field=field_name)
        if inner is not None and not isinstance(inner, Backend):
            raise ConfigError("inner must implement the Backend protocol", field="inner")
        self.name = name
        # Tokens take a little time so that a long generation yields to the loop (and deadlines).
        self.inner: Backend = inner if inner is not None else SimBackend(name=name, token_time=0.0005)
        self.model = self.inner.model
        self.capabilities = self.inner.capabilities
        self.plan = (plan or FaultPlan()).only(BACKEND_FAULTS)
        self.log = log if log is not None else FaultLog()
        self.spike_s = float(spike_s)
        self.hang_s = hang_s
        self.key = key

    @classmethod
    def from_options(
        cls,
        *,
        name: str = "chaos",
        inner: Mapping[str, Any] | None = None,
        seed: int = 0,
        rates: Mapping[str, float] | None = None,
        spike_s: float = 0.2,
        hang_s: float | None = None,
    ) -> ChaosBackend:
        """Build from config: ``inner`` is a backend table (``{"kind": "sim", ...}``), rates by fault name."""
        built: Backend | None = None
        if inner is not None:
            if not isinstance(inner, Mapping) or not isinstance(inner.get("kind"), str):
                raise ConfigError("inner must be a table with a 'kind'", field="inner.kind")
            from aios.backends.registry import aios_backends  # the built-in kinds, looked up lazily

            kinds = {k: f for k, f in aios_backends().items() if k != "chaos"}
            factory = kinds.get(inner["kind"])
            if factory is None:
                raise ConfigError(
                    f"inner kind {inner['kind']!r} is not a built-in backend; have {sorted(kinds)}",
                    field="inner.kind",
                )
            options = {k: v for k, v in inner.items() if k not in ("kind", "name")}
            try:
                built = factory(name=name, **options)
            except TypeError as exc:
                raise ConfigError(f"inner backend: {exc}", field="inner") from None
        return cls(
            name=name,
            inner=built,
            plan=FaultPlan.from_options(seed, rates),
            spike_s=spike_s,
            hang_s=hang_s,
        )

    async def start(self) -> None:
        """Start the inner backend."""
        await self.inner.start()

    async def close(self) -> None:
        """Close the inner backend."""
        await self.inner.close()

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
        priority: int = 0,
    ) -> Outcome:
        """The inner backend's answer, unless the plan says this call misbehaves."""
        key = self.key(request)
        fault = self.plan.decide(key, salt=SALT)
        if fault is not None and fault is not Fault.DROP_DURING and resume is None:
            early = await self._before_output(fault, key)
            if early is not None:
                return early
        if fault is Fault.DROP_DURING:
            done = resume.tokens if resume is not None else 0
            # Somewhere strictly inside the answer, so at least one token reached the caller.
            at = 1 + int(self.plan.uniform(key, salt=SALT) * max(1, request.max_tokens - 1))
            if done < at:
                control = _DropAfter(control, at - done)
        kwargs: dict[str, Any] = {"priority": priority} if self.inner.capabilities.priority else {}
        try:
            return await self.inner.generate(
                request, control=control, resume=resume, on_delta=on_delta, **kwargs
            )
        except _Dropped:
            self.log.record("backend", Fault.DROP_DURING, key)
            raise StreamInterruptedError(
                f"{self.name}: chaos: connection dropped mid-stream", backend=self.name, retryable=False
            ) from None

    async def _before_output(self, fault: Fault, key: str) -> Outcome | None:
        """Inject ``fault`` before any token: raise, stall, or return garbage (None: carry on)."""
        self.log.record("backend", fault, key)
        name = self.name
        if fault is Fault.RATE_LIMIT:
            raise RateLimitedError(f"{name}: chaos: HTTP 429", backend=name, status_code=429, retryable=True)
        if fault is Fault.SERVER_ERROR:
            raise BackendError(f"{name}: chaos: HTTP 500", backend=name, status_code=500, retryable=True)
        if fault is Fault.UNAVAILABLE:
            raise BackendError(f"{name}: chaos: HTTP 503", backend=name, status_code=503, retryable=True)
        if fault is Fault.DROP_BEFORE:
            raise StreamInterruptedError(
                f"{name}: chaos: connection dropped before any output", backend=name, retryable=True
            )
        if fault is Fault.CRASH:
            raise ChaosFault(f"{name}: chaos: the backend has a bug")
        if fault is Fault.MALFORMED:
            # Not an Outcome: the dispatcher must turn this into a typed error, not crash or hang.
            return cast(Outcome, {"choices": None, "chaos": "malformed"})
        if fault is Fault.HANG:
            if self.hang_s is None:
                await asyncio.Event().wait()  # forever: only cancellation (the deadline) ends it
            await asyncio.sleep(self.hang_s or 0.0)
            raise BackendTimeoutError(
                f"{name}: chaos: no answer in {self.hang_s} s", backend=name, retryable=True
            )
        if fault is Fault.LATENCY:
            await asyncio.sleep(self.spike_s)
        return None
