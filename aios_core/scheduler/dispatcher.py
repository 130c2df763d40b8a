"""The dispatcher: the asyncio mechanism that runs syscalls on cores under a policy.

It keeps every core full up to its capacity: whenever a slot frees or work arrives, ``_pump``
asks the policy for the next eligible syscall and starts it on the best core (the agent's last
core if it has room, for prefix-cache affinity; else the least loaded). A generation runs until
it finishes or its slice ends while others wait for that core; then it is cut, its snapshot goes
to the context manager and the syscall goes back to the policy.

Every exit path of a syscall goes through ``_finish``, which resolves the caller's future, so a
caller never hangs: backend errors, bugs in the kernel, deadlines, cancellation and shutdown all
end as a typed ``AIOSError`` on the future.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aios.backends.base import Backend, Completed, Outcome, SliceControl
from aios.clock import Clock
from aios.context import ContextManager
from aios.errors import (
    AIOSError,
    BackendError,
    CancelledError,
    DeadlineExceededError,
    KernelInternalError,
    KernelNotRunningError,
    QueueFullError,
)
from aios.metrics import MetricsCollector
from aios.scheduler.policies import HeapPolicy
from aios.scheduler.quota import QuotaBook
from aios.syscalls import Status, Syscall, transition

_log = logging.getLogger(__name__)

#: Consecutive failed pumps (the policy raising) retried before the waiting calls are failed.
_PUMP_RETRIES = 3


@dataclass(slots=True, eq=False)
class Core:
    """One LLM backend and the generations it is running."""

    name: str
    backend: Backend
    capacity: int
    running: set[Syscall] = field(default_factory=set)
    #: Waiting syscalls that could run here (read by slices to decide whether to yield).
    waiting: int = 0
    served: int = 0
    max_running: int = 0

    def contended(self) -> bool:
        """Whether someone waits for this core (a slice that ended is only cut then)."""
        return self.waiting > 0


class Dispatcher:
    """Queues, per-core concurrency caps, time slices, preemption, deadlines and cancellation."""

    def __init__(
        self,
        cores: list[Core],
        policy: HeapPolicy,
        *,
        clock: Clock,
        context: ContextManager,
        metrics: MetricsCollector,
        quotas: QuotaBook | None = None,
        max_queued: int = 100_000,
    ):
        self.cores = {c.name: c for c in cores}
        self.policy = policy
        self.clock = clock
        self.context = context
        self.metrics = metrics
        self.quotas = quotas if quotas is not None and quotas.active else None
        self.max_queued = max_queued
        self._seq = itertools.count(1)
        self._tasks: dict[Syscall, asyncio.Task[None]] = {}
        self._timers: dict[Syscall, asyncio.TimerHandle] = {}
        self._cancel_reasons: dict[Syscall, AIOSError] = {}
        self._affinity: dict[str, str] = {}
        self._pumping = False
        self._wake_at = math.inf
        self._wake_task: asyncio.Task[None] | None = None
        self._closed = False
        self._services: dict[str, asyncio.Semaphore] = {}
        #: Tasks running non-LLM syscalls, so shutdown can cancel them too.
        self._service_tasks: dict[asyncio.Task[Any], Syscall] = {}
        #: Exceptions raised by the kernel's own components (policy, context, metrics), by site.
        self.component_faults: Counter[str] = Counter()
        self._pump_failures = 0
        self._pump_retry: asyncio.Handle | None = None

    # -- submission -------------------------------------------------------------------------

    def submit(self, sc: Syscall) -> None:
        """Queue an LLM syscall (its ``candidates`` already resolved); raises if refused."""
        if self._closed:
            raise KernelNotRunningError("the kernel is stopped", syscall_id=sc.id, agent=sc.agent)
        if len(self.policy) >= self.max_queued:
            raise QueueFullError(
                f"{len(self.policy)} syscalls already queued (max_queued={self.max_queued})",
                syscall_id=sc.id,
                agent=sc.agent,
            )
        sc.seq = next(self._seq)
        now = self.clock.now()
        if not sc.history:
            sc.history.append((Status.CREATED, now))
        try:
            self._enqueue(sc, now)
        except Exception as exc:  # a policy bug: the caller gets a typed error, nothing is left queued
            err = exc if isinstance(exc, AIOSError) else self._fault("policy.push", exc)
            self._finish(sc, None, error=err)
            if err is exc:
                raise
            raise err from exc
        if sc.deadline is not None:
            loop = asyncio.get_running_loop()
            self._timers[sc] = loop.call_later(max(0.0, sc.deadline - now), self._expire, sc)
        self._pump()

    def _enqueue(self, sc: Syscall, now: float) -> None:
        transition(sc, Status.QUEUED, now)
        # Count the waiter only once the policy holds it, so a failed push leaves no phantom.
        self.policy.push(sc)
        for name in sc.candidates:
            self.cores[name].waiting += 1

    def _unwait(self, sc: Syscall) -> None:
        for name in sc.candidates:
            self.cores[name].waiting -= 1

    # -- the pump ---------------------------------------------------------------------------

    def _fault(self, site: str, exc: Exception) -> KernelInternalError:
        """Count and log a kernel component's exception; the typed error to give a caller."""
        self.component_faults[site] += 1
        _log.warning("%s raised %s: %s", site, type(exc).__name__, exc)
        return KernelInternalError(f"{site} raised {type(exc).__name__}: {exc}")

    def _pump(self, *, strict: bool = False) -> None:
        """Fill every free core slot; a policy failure is retried (or raised when ``strict``)."""
        if self._pumping or self._closed:
            return
        self._pumping = True
        try:
            self._fill()
            self._pump_failures = 0
        except Exception as exc:
            if strict:
                raise
            self._pump_failed(exc)
        finally:
            self._pumping = False
        for core in self.cores.values():
            assert len(core.running) <= core.capacity, f"core {core.name} over capacity"

    def _pump_failed(self, exc: Exception) -> None:
        # Runs with _pumping still set, so the _finish calls below do not re-enter the policy.
        err = self._fault("pump", exc)
        self._pump_failures += 1
        if self._pump_failures <= _PUMP_RETRIES:
            # The calls stay queued: try again once the loop has run, rather than fail them now.
            if self._pump_retry is None:
                self._pump_retry = asyncio.get_running_loop().call_soon(self._retry_pump)
            return
        # A policy that keeps raising would otherwise strand every waiting call until its deadline.
        self._pump_failures = 0
        try:
            stranded = self.policy.waiting()
        except Exception as inner:
            self._fault("policy.waiting", inner)
            return
        for sc in stranded:
            self.cancel(sc, KernelInternalError(f"the scheduling policy keeps failing: {err.message}"))

    def _retry_pump(self) -> None:
        self._pump_retry = None
        self._pump()

    def _fill(self) -> None:
        while len(self.policy):
            free = {c.name for c in self.cores.values() if len(c.running) < c.capacity}
            if not free:
                break
            now = self.clock.now()
            wake = math.inf

            def eligible(sc: Syscall, free: set[str] = free, now: float = now) -> bool:
                nonlocal wake
                if free.isdisjoint(sc.candidates):
                    return False
                if self.quotas is not None:
                    t = self.quotas.eligible_at(sc.agent, now)
                    if t > now:
                        wake = min(wake, t)
                        return False
                return True

            sc = self.policy.pop(eligible)
            if sc is None:
                if wake < math.inf:
                    self._schedule_wake(wake)
                break
            self._unwait(sc)
            if sc.status.final:
                continue  # ended while queued and the policy could not let go of it: skip it
            self._start(sc, self._choose_core(sc, free), now)

    def _choose_core(self, sc: Syscall, free: set[str]) -> Core:
        preferred = self._affinity.get(sc.agent)
        if preferred in free and preferred in sc.candidates:
            return self.cores[preferred]
        options = [self.cores[n] for n in sc.candidates if n in free]
        return min(options, key=lambda c: (len(c.running) / c.capacity, c.served))

    def _schedule_wake(self, t: float) -> None:
        if self._wake_task is not None and not self._wake_task.done() and self._wake_at <= t:
            return
        if self._wake_task is not None:
            self._wake_task.cancel()
        self._wake_at = t
        self._wake_task = asyncio.get_running_loop().create_task(self._wake(t))

    async def _wake(self, t: float) -> None:
        await self.clock.sleep_until(t)
        self._wake_at = math.inf
        self._pump()

    def _start(self, sc: Syscall, core: Core, now: float) -> None:
        # The transition goes first: it refuses a syscall that is not queued before it takes a slot.
        transition(sc, Status.RUNNING, now)
        core.running.add(sc)
        core.served += 1
        core.max_running = max(core.max_running, len(core.running))
        sc.core = core.name
        self._affinity[sc.agent] = core.name
        task = asyncio.get_running_loop().create_task(self._run(sc, core))
        self._tasks[sc] = task
        task.add_done_callback(lambda t: self._task_done(sc, core, t))

    def _task_done(self, sc: Syscall, core: Core, task: asyncio.Task[None]) -> None:
        # Safety net: a task cancelled before its first step never runs its except clauses.
        if sc.status is Status.RUNNING and self._tasks.get(sc) is task:
            reason = self._cancel_reasons.pop(sc, None)
            if reason is None and not task.cancelled() and task.exception() is not None:
                reason = KernelInternalError(f"dispatcher task failed: {task.exception()!r}")
            self._finish(sc, core, error=reason or CancelledError("cancelled"))

    # -- running one slice ------------------------------------------------------------------

    async def _run(self, sc: Syscall, core: Core) -> None:
        snap = self.context.restore(sc.id)
        clock = self.clock

        def first_token() -> None:
            if sc.first_token_at is None:
                sc.first_token_at = clock.now()
            control.on_token = None

        sl = self.policy.slice
        control = SliceControl(
            max_tokens=sl.tokens,
            max_seconds=sl.seconds,
            contended=core.contended,
            on_token=first_token,
            clock=clock.now,
        )
        kwargs: dict[str, Any] = {"priority": sc.priority} if core.backend.capabilities.priority else {}
        try:
            outcome: Outcome = await core.backend.generate(
                sc.request, control=control, resume=snap, on_delta=sc.on_delta, **kwargs
            )
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(sc, None)
            self._finish(sc, core, error=reason or CancelledError("cancelled"))
            return
        except AIOSError as exc:
            self._finish(sc, core, error=exc)
            return
        except Exception as exc:  # a backend bug must not hang the caller
            self._finish(
                sc,
                core,
                error=BackendError(
                    f"backend {core.name!r} raised {type(exc).__name__}: {exc}", backend=core.name
                ),
            )
            return
        try:
            self._charge(sc, outcome)
            if isinstance(outcome, Completed):
                outcome.result.backend = outcome.result.backend or core.name
                self._finish(sc, core, result=outcome.result)
            else:
                self._preempt(sc, core, outcome.snapshot)
        except Exception as exc:  # a policy or context bug: fail this call, keep serving others
            err = exc if isinstance(exc, AIOSError) else KernelInternalError(f"{type(exc).__name__}: {exc}")
            self._finish(sc, core, error=err)

    def _charge(self, sc: Syscall, outcome: Outcome) -> None:
        usage = outcome.result.usage if isinstance(outcome, Completed) else outcome.snapshot.usage
        total = usage.prompt_tokens + usage.completion_tokens + usage.recomputed_tokens
        delta = total - sc.attained
        if delta > 0:
            sc.attained = total
            self.policy.charge(sc.agent, delta)
            if self.quotas is not None:
                self.quotas.charge(sc.agent, delta, self.clock.now())

    def _preempt(self, sc: Syscall, core: Core, snapshot: Any) -> None:
        now = self.clock.now()
        self.context.save(sc.id, snapshot)
        core.running.discard(sc)
        self._tasks.pop(sc, None)
        transition(sc, Status.PREEMPTED, now)
        self._enqueue(sc, now)
        # Strict: a policy failure here is this call's (like a failed save); _run fails it.
        self._pump(strict=True)

    def _finish(
        self, sc: Syscall, core: Core | None, *, result: Any = None, error: AIOSError | None = None
    ) -> None:
        """The one exit: resolve the future, release the slot, record metrics, refill the core."""
        if sc.status.final:
            return
        # A broken policy, context or metrics component must neither keep the future open nor
        # stall the calls behind this one: each is guarded, and the pump always runs.
        try:
            if core is not None:
                core.running.discard(sc)
            self._tasks.pop(sc, None)
            timer = self._timers.pop(sc, None)
            if timer is not None:
                timer.cancel()
            if sc.status is Status.QUEUED:
                try:
                    if self.policy.remove(sc):
                        self._unwait(sc)
                except Exception as exc:
                    self._fault("policy.remove", exc)  # the pump skips it when it comes out
            try:
                self.context.drop(sc.id)
            except Exception as exc:
                fault = self._fault("context.drop", exc)
                error = error or fault
            now = self.clock.now()
            if error is None:
                transition(sc, Status.DONE, now, result=result)
            else:
                error.syscall_id = error.syscall_id or sc.id
                error.agent = error.agent or sc.agent
                to = Status.CANCELLED if isinstance(error, CancelledError) else Status.FAILED
                transition(sc, to, now, error=error)
            try:
                self.metrics.record(sc)
            except Exception as exc:
                self._fault("metrics.record", exc)
        finally:
            self._pump()

    # -- cancellation and deadlines ---------------------------------------------------------

    def cancel(self, sc: Syscall, error: AIOSError | None = None) -> None:
        """Stop ``sc`` wherever it is; its caller gets ``error`` (default: CancelledError)."""
        error = error or CancelledError("cancelled by the caller")
        if sc.status.final:
            return
        if sc.status is Status.RUNNING:
            task = self._tasks.get(sc)
            if task is not None:
                self._cancel_reasons[sc] = error
                task.cancel()
                return
        elif self.policy.remove(sc):
            self._unwait(sc)
        self._finish(sc, None, error=error)

    def _expire(self, sc: Syscall) -> None:
        self._timers.pop(sc, None)
        self.cancel(sc, DeadlineExceededError("the syscall's deadline passed"))

    # -- non-LLM syscalls -------------------------------------------------------------------

    async def run_service(
        self, sc: Syscall, fn: Callable[[], Awaitable[Any]], *, concurrency: int = 64
    ) -> Any:
        """Run a memory/storage/tool/access syscall: same record, queue, deadline, errors, metrics."""
        if self._closed:
            raise KernelNotRunningError("the kernel is stopped", syscall_id=sc.id, agent=sc.agent)
        sem = self._services.get(sc.kind)
        if sem is None:
            sem = self._services[sc.kind] = asyncio.Semaphore(concurrency)
        now = self.clock.now()
        sc.seq = next(self._seq)
        if not sc.history:
            sc.history.append((Status.CREATED, now))
        transition(sc, Status.QUEUED, now)
        timeout = None if sc.deadline is None else max(0.0, sc.deadline - now)
        task = asyncio.current_task()
        if task is not None:
            self._service_tasks[task] = sc
        try:
            async with asyncio.timeout(timeout):
                async with sem:
                    transition(sc, Status.RUNNING, self.clock.now())
                    result = await fn()
        except TimeoutError:
            self._finish_service(sc, error=DeadlineExceededError("the syscall's deadline passed"))
        except asyncio.CancelledError:
            why = "the kernel is shutting down" if self._closed else "cancelled by the caller"
            self._finish_service(sc, error=CancelledError(why))
            if self._closed and task is not None and task.cancelling() <= 1:
                task.uncancel()  # our own shutdown cancel: the caller gets the typed error instead
                return await sc.future
            raise
        except AIOSError as exc:
            self._finish_service(sc, error=exc)
        except Exception as exc:
            self._finish_service(
                sc, error=KernelInternalError(f"{sc.kind} syscall raised {type(exc).__name__}: {exc}")
            )
        else:
            self._finish_service(sc, result=result)
        finally:
            if task is not None:
                self._service_tasks.pop(task, None)
        return await sc.future

    def _finish_service(self, sc: Syscall, *, result: Any = None, error: AIOSError | None = None) -> None:
        if sc.status.final:
            return
        self._finish(sc, None, result=result, error=error)

    # -- shutdown ---------------------------------------------------------------------------

    async def close(self, *, timeout: float = 5.0) -> None:
        """Cancel everything queued or running with a clear error and wait for the tasks to end."""
        stop = CancelledError("the kernel is shutting down")
        self._closed = True
        for sc in self.policy.waiting():
            self.cancel(sc, CancelledError(stop.message))
        for sc in list(self._tasks):
            self.cancel(sc, CancelledError(stop.message))
        for task in list(self._service_tasks):
            task.cancel()
        if self._wake_task is not None:
            self._wake_task.cancel()
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # -- introspection ----------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """How many syscalls wait."""
        return len(self.policy)

    def in_flight(self) -> dict[str, int]:
        """Generations running per core."""
        return {name: len(c.running) for name, c in self.cores.items()}
