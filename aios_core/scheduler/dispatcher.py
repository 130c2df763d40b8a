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
import math
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
        self._enqueue(sc, now)
        if sc.deadline is not None:
            loop = asyncio.get_running_loop()
            self._timers[sc] = loop.call_later(max(0.0, sc.deadline - now), self._expire, sc)
        self._pump()

    def _enqueue(self, sc: Syscall, now: float) -> None:
        transition(sc, Status.QUEUED, now)
        for name in sc.candidates:
            self.cores[name].waiting += 1
        self.policy.push(sc)

    def _unwait(self, sc: Syscall) -> None:
        for name in sc.candidates:
            self.cores[name].waiting -= 1

    # -- the pump ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Fill every free core slot with the policy's next eligible syscall."""
        if self._pumping or self._closed:
            return
        self._pumping = True
        try:
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
                self._start(sc, self._choose_core(sc, free), now)
        finally:
            self._pumping = False
        for core in self.cores.values():
            assert len(core.running) <= core.capacity, f"core {core.name} over capacity"

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
        core.running.add(sc)
        core.served += 1
        core.max_running = max(core.max_running, len(core.running))
        sc.core = core.name
        self._affinity[sc.agent] = core.name
        transition(sc, Status.RUNNING, now)
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
        self._pump()

    def _finish(
        self, sc: Syscall, core: Core | None, *, result: Any = None, error: AIOSError | None = None
    ) -> None:
        """The one exit: resolve the future, release the slot, record metrics, refill the core."""
        if sc.status.final:
            return
        if core is not None:
            core.running.discard(sc)
        self._tasks.pop(sc, None)
        timer = self._timers.pop(sc, None)
        if timer is not None:
            timer.cancel()
        self.context.drop(sc.id)
        now = self.clock.now()
        if error is None:
            transition(sc, Status.DONE, now, result=result)
        else:
            error.syscall_id = error.syscall_id or sc.id
            error.agent = error.agent or sc.agent
            to = Status.CANCELLED if isinstance(error, CancelledError) else Status.FAILED
            transition(sc, to, now, error=error)
        self.metrics.record(sc)
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
