"""Faults inside the kernel's own components: a policy, a context manager, a storage backend.

Each is a wrapper (or subclass) of the real component that behaves exactly like it, except that
at chosen *sites* it raises ``ChaosFault`` (a stand-in for a bug) or stalls, on a seeded schedule.
They go in through the kernel's public seams: ``Kernel(policy=ChaosPolicy(...))``, and
``install(kernel, context=..., store=...)``, which swaps the context manager and the storage
backend of a kernel that has not started yet. No kernel file is edited.

Fault keys are the label of the LLM call involved (the text of its last user message; see
``LabelBook``), so a fault lands on the same call in every run whatever the interleaving. Each
site fires once per label (a component that failed for a call works when asked again), or, with
``persistent=True``, every time it is asked about that call (a component broken for that call).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aios.backends.base import Snapshot
from aios.chaos.backend import last_user_text
from aios.chaos.faults import ChaosFault, Fault, FaultLog, FaultPlan
from aios.context import ContextManager
from aios.errors import ConfigError, StorageError
from aios.managers.storage_backend import StorageBackend, VersionInfo
from aios.scheduler.policies import HeapPolicy
from aios.syscalls import Syscall

if TYPE_CHECKING:
    from aios.kernel import Kernel

#: Sites whose faults the dispatcher handles cleanly today (the failing call gets a typed error).
SAFE_POLICY_SITES = frozenset({"charge"})
SAFE_CONTEXT_SITES = frozenset({"save", "restore"})
#: Sites that expose dispatcher bugs (see tests/reliability/test_kernel_component_faults.py).
ALL_POLICY_SITES = frozenset({"push", "pop", "charge"})
ALL_CONTEXT_SITES = frozenset({"save", "restore", "drop"})


class LabelBook:
    """Which LLM call each syscall id and each agent is on (filled by ``ChaosPolicy.push``)."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}
        self.by_agent: dict[str, str] = {}

    def note(self, sc: Syscall) -> str:
        """Remember ``sc``'s label and return it."""
        label = last_user_text(sc.request) if sc.kind == "llm" else f"{sc.kind}:{sc.id}"
        self.by_id[sc.id] = label
        self.by_agent[sc.agent] = label
        return label

    def forget(self, syscall_id: str) -> None:
        """Drop a finished syscall's entry (keeps the book bounded in long runs)."""
        self.by_id.pop(syscall_id, None)


class _Sites:
    """Seeded faults at named sites of one component: once per label, or every time (persistent)."""

    def __init__(
        self,
        component: str,
        plan: FaultPlan,
        log: FaultLog,
        sites: Iterable[str],
        known: frozenset[str],
        *,
        persistent: bool = False,
    ):
        chosen = frozenset(sites)
        if not chosen <= known:
            raise ConfigError(f"unknown {component} fault sites {sorted(chosen - known)}", field="sites")
        self.component = component
        self.plan = plan.only({Fault.CRASH})
        self.log = log
        self.sites = chosen
        self.persistent = persistent
        self._fired: set[tuple[str, str]] = set()

    def maybe_raise(self, site: str, label: str | None) -> None:
        if label is None or site not in self.sites:
            return
        if not self.persistent and (site, label) in self._fired:
            return
        if self.plan.decide(label, salt=f"{self.component}.{site}") is Fault.CRASH:
            self._fired.add((site, label))
            self.log.record(f"{self.component}.{site}", Fault.CRASH, label)
            raise ChaosFault(f"chaos: {self.component}.{site} failed for {label!r}")


class ChaosPolicy(HeapPolicy):
    """Any policy, raising at ``sites`` (``push``, ``pop``, ``charge``) on the plan's schedule."""

    def __init__(
        self,
        inner: HeapPolicy,
        plan: FaultPlan,
        log: FaultLog | None = None,
        *,
        sites: Iterable[str] = SAFE_POLICY_SITES,
        book: LabelBook | None = None,
        persistent: bool = False,
    ):
        super().__init__(inner.slice)
        self.inner = inner
        self.name = inner.name
        self.log = log if log is not None else FaultLog()
        self.book = book if book is not None else LabelBook()
        self._sites = _Sites("policy", plan, self.log, sites, ALL_POLICY_SITES, persistent=persistent)
        self._pops = itertools.count()

    def push(self, sc: Syscall) -> None:
        """Queue ``sc`` in the inner policy (a ``push`` fault raises before it is queued)."""
        label = self.book.note(sc)
        self._sites.maybe_raise("push", label)
        self.inner.push(sc)

    def pop(self, eligible: Callable[[Syscall], bool]) -> Syscall | None:
        """The inner policy's choice (a ``pop`` fault raises before anything is taken)."""
        self._sites.maybe_raise("pop", f"pop-{next(self._pops)}/")
        return self.inner.pop(eligible)

    def remove(self, sc: Syscall) -> bool:
        """Remove from the inner policy."""
        return self.inner.remove(sc)

    def charge(self, agent: str, tokens: int) -> None:
        """Charge the inner policy (a ``charge`` fault raises for the agent's current call)."""
        self._sites.maybe_raise("charge", self.book.by_agent.get(agent))
        self.inner.charge(agent, tokens)

    def __len__(self) -> int:
        return len(self.inner)

    def waiting(self) -> list[Syscall]:
        """The inner policy's waiting syscalls."""
        return self.inner.waiting()


class ChaosContext(ContextManager):
    """The context manager, raising at ``sites`` (``save``, ``restore``, ``drop``) on schedule."""

    def __init__(
        self,
        plan: FaultPlan,
        log: FaultLog | None = None,
        *,
        book: LabelBook,
        sites: Iterable[str] = SAFE_CONTEXT_SITES,
        max_bytes: int = 512 * 1024 * 1024,
        persistent: bool = False,
    ):
        super().__init__(max_bytes=max_bytes)
        self.log = log if log is not None else FaultLog()
        self.book = book
        self._sites = _Sites("context", plan, self.log, sites, ALL_CONTEXT_SITES, persistent=persistent)

    def save(self, syscall_id: str, snap: Snapshot) -> None:
        """Keep the snapshot (a ``save`` fault raises first)."""
        self._sites.maybe_raise("save", self.book.by_id.get(syscall_id))
        super().save(syscall_id, snap)

    def restore(self, syscall_id: str) -> Snapshot | None:
        """Take the snapshot back (a ``restore`` fault raises first)."""
        self._sites.maybe_raise("restore", self.book.by_id.get(syscall_id))
        return super().restore(syscall_id)

    def drop(self, syscall_id: str) -> None:
        """Forget the snapshot (a ``drop`` fault raises first); the label book forgets the call."""
        label = self.book.by_id.get(syscall_id)
        self._sites.maybe_raise("drop", label)
        super().drop(syscall_id)
        self.book.forget(syscall_id)


#: Faults the storage wrapper injects, always *before* the real call (so nothing is half-written).
STORE_FAULTS = frozenset({Fault.SERVER_ERROR, Fault.CRASH, Fault.LATENCY, Fault.HANG})


class ChaosStore:
    """A ``StorageBackend`` wrapper: typed ``StorageError``, foreign errors, stalls, before each op."""

    def __init__(
        self, inner: StorageBackend, plan: FaultPlan, log: FaultLog | None = None, *, spike_s: float = 0.05
    ):
        if not isinstance(inner, StorageBackend):
            raise ConfigError("inner must implement StorageBackend", field="inner")
        self.inner = inner
        self.plan = plan.only(STORE_FAULTS)
        self.log = log if log is not None else FaultLog()
        self.spike_s = spike_s
        self._counts: dict[tuple[str, str, str], int] = {}

    async def _fault(self, op: str, owner: str, key: str) -> None:
        n = self._counts.get((op, owner, key), 0)
        self._counts[(op, owner, key)] = n + 1
        label = f"{owner}|{key}|{op}|{n}"
        fault = self.plan.decide(label, salt="store")
        if fault is None:
            return
        self.log.record("store", fault, owner)
        if fault is Fault.SERVER_ERROR:
            raise StorageError(f"chaos: storage {op} failed (database locked)", retryable=True)
        if fault is Fault.CRASH:
            raise ChaosFault(f"chaos: storage {op} hit an I/O bug")
        if fault is Fault.HANG:
            await asyncio.Event().wait()  # only the syscall's deadline ends this
        await asyncio.sleep(self.spike_s)

    async def append(
        self,
        owner: str,
        key: str,
        value: bytes | None,
        *,
        writer: str,
        time: float,
        expected_head: int | None = None,
    ) -> VersionInfo:
        """Inner ``append`` after a possible fault."""
        await self._fault("append", owner, key)
        return await self.inner.append(
            owner, key, value, writer=writer, time=time, expected_head=expected_head
        )

    async def head(self, owner: str, key: str) -> VersionInfo | None:
        """Inner ``head`` after a possible fault."""
        await self._fault("head", owner, key)
        return await self.inner.head(owner, key)

    async def get(
        self, owner: str, key: str, version: int | None = None
    ) -> tuple[VersionInfo, bytes | None] | None:
        """Inner ``get`` after a possible fault."""
        await self._fault("get", owner, key)
        return await self.inner.get(owner, key, version)

    async def history(self, owner: str, key: str) -> list[VersionInfo]:
        """Inner ``history`` after a possible fault."""
        await self._fault("history", owner, key)
        return await self.inner.history(owner, key)

    async def keys(self, owner: str, prefix: str = "") -> list[str]:
        """Inner ``keys`` after a possible fault."""
        await self._fault("keys", owner, prefix)
        return await self.inner.keys(owner, prefix)

    async def close(self) -> None:
        """Close the inner backend."""
        await self.inner.close()


def install(
    kernel: Kernel, *, context: ContextManager | None = None, store: ChaosStore | None = None
) -> None:
    """Put chaos components into a kernel that has not started: its context manager, its storage."""
    if kernel.running:
        raise ConfigError("install chaos components before the kernel starts", field="kernel")
    if context is not None:
        kernel.context = context
        kernel.dispatcher.context = context
    if store is not None:
        kernel.services.storage.backend = store
