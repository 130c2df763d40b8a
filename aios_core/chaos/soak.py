"""The soak: one kernel serves a long mixed workload; memory, tasks, files and processes stay flat.

``run_soak(SoakConfig(syscalls=100_000))`` drives a kernel on the ``sim`` backend with LLM, memory,
storage and tool syscalls from many agents at once, including calls the caller cancels, calls that
miss a tiny deadline, bad requests, and now and then a sandboxed Python run (a subprocess). At
checkpoints it samples, after a full garbage collection:

- resident memory (``VmRSS``), the objects the garbage collector tracks and the memory blocks
  Python's allocator holds (which also counts objects the collector does not track),
- asyncio tasks alive, open file descriptors, threads, child processes,
- the dispatcher's own books (running, queued, timers) and the context manager's held snapshots.

The kernel keeps two bounded rings: the ``MetricsCollector``'s last ``metrics_keep`` syscall records
(100,000 by default) and the access manager's in-memory audit log (10,000 records). A soak that
is short next to a ring sees it fill and could call that a leak, so the soak runs with
``metrics_keep`` small and counts the records both rings hold at each checkpoint
(``ring_records``). A ring full of warm-up records still costs less than one full of the mix's
(their strings differ), so growth is measured over the second half of the run, once the audit
log has turned over; the whole series is reported too, and, separately, what a full default
metrics ring costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aios.backends.sim import SimBackend
from aios.config import KernelConfig
from aios.errors import AIOSError
from aios.kernel import Kernel
from aios.metrics import MetricsCollector
from aios.syscalls import SyscallStats
from aios.types import LLMRequest


@dataclass(slots=True)
class SoakConfig:
    """The size and mix of a soak."""

    syscalls: int = 100_000
    agents: int = 50
    checkpoints: int = 10
    #: One sandboxed Python run (a real subprocess) every this many syscalls (0: none).
    python_every: int = 5_000
    metrics_keep: int = 1_000
    seed: int = 11
    capacity: int = 8


@dataclass(slots=True)
class Sample:
    """Resources in use at one checkpoint (after ``gc.collect()``)."""

    done: int
    rss_kb: int
    objects: int
    #: Memory blocks held by Python's allocator: catches leaks of objects the GC does not track.
    blocks: int
    tasks: int
    fds: int
    threads: int
    children: int
    running: int
    queued: int
    timers: int
    snapshots: int
    #: Records held by the kernel's two bounded rings (metrics, audit log): growth there is not a leak.
    ring_records: int = 0

    @property
    def unbounded_objects(self) -> int:
        """Tracked objects less the ring records: what must stay flat."""
        return self.objects - self.ring_records


@dataclass(slots=True)
class SoakReport:
    """What the soak saw: samples, outcomes, and the growth between the first and last sample."""

    syscalls: int
    ok: int
    errors: dict[str, int]
    untyped: int
    elapsed_s: float
    samples: list[Sample] = field(default_factory=list)
    baseline: Sample | None = None
    after_stop: Sample | None = None
    ring_default_kb: int = 0

    def growth(self, *, whole: bool = False) -> dict[str, int]:
        """Last sample minus the one half way (the first half is the warm-up), or the first one."""
        first = self.samples[0] if whole else self.samples[len(self.samples) // 2 - 1]
        last = self.samples[-1]
        return {
            "rss_kb": last.rss_kb - first.rss_kb,
            "objects": last.objects - first.objects,
            "ring_records": last.ring_records - first.ring_records,
            "allocated_blocks": last.blocks - first.blocks,
            "objects_outside_rings": last.unbounded_objects - first.unbounded_objects,
            "tasks": last.tasks - first.tasks,
            "fds": last.fds - first.fds,
            "threads": last.threads - first.threads,
            "children": last.children - first.children,
        }

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers."""
        return {
            "syscalls": self.syscalls,
            "ok": self.ok,
            "errors": self.errors,
            "untyped": self.untyped,
            "elapsed_s": round(self.elapsed_s, 1),
            "growth_second_half": self.growth(),
            "growth_from_first_checkpoint": self.growth(whole=True),
            "rss_kb": [s.rss_kb for s in self.samples],
            "objects": [s.objects for s in self.samples],
            "allocated_blocks": [s.blocks for s in self.samples],
            "baseline": None if self.baseline is None else _as_dict(self.baseline),
            "after_stop": None if self.after_stop is None else _as_dict(self.after_stop),
            "metrics_ring_100k_kb": self.ring_default_kb,
        }


def _as_dict(s: Sample) -> dict[str, int]:
    return {name: getattr(s, name) for name in Sample.__slots__}


def rss_kb() -> int:
    """Resident set size of this process, in KiB (Linux ``/proc``)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def child_processes() -> int:
    """Live child processes of this process (over all its threads)."""
    kids: set[str] = set()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/children", encoding="ascii") as fh:
            kids.update(fh.read().split())
    return len(kids)


def sample(kernel: Kernel | None, done: int) -> Sample:
    """Collect garbage, then measure (see the module docstring)."""
    gc.collect()
    d = kernel.dispatcher if kernel is not None else None
    return Sample(
        done=done,
        rss_kb=rss_kb(),
        objects=len(gc.get_objects()),
        blocks=sys.getallocatedblocks(),
        tasks=len(asyncio.all_tasks()),
        fds=open_fds(),
        threads=threading.active_count(),
        children=child_processes(),
        running=sum(d.in_flight().values()) if d is not None else 0,
        queued=d.queued if d is not None else 0,
        # The dispatcher's deadline timers: a leak here would be a timer per finished syscall.
        timers=len(d._timers) if d is not None else 0,
        snapshots=kernel.context.stats.held if kernel is not None else 0,
        ring_records=_ring_records(kernel),
    )


def _ring_records(kernel: Kernel | None) -> int:
    if kernel is None:
        return 0
    held = len(kernel.metrics.recent)
    if kernel.running:
        held += len(kernel.services.access.audit_log(limit=None))
    return held


def ring_cost_kb(keep: int = 100_000) -> int:
    """RSS a full metrics ring of ``keep`` records adds (measured by filling one)."""
    gc.collect()
    before = rss_kb()
    ring = MetricsCollector(keep=keep)
    for i in range(keep):
        ring.recent.append(
            SyscallStats(
                f"sc-{i}", f"agent-{i % 50}", "llm", "sim", "done", 0.001, 0.002, None, 0, 12, 8, None
            )
        )
    after = rss_kb()
    del ring
    gc.collect()
    return after - before


class _Mix:
    """The agents' shared counter, checkpoints and outcome tallies."""

    def __init__(self, cfg: SoakConfig, kernel: Kernel):
        self.cfg = cfg
        self.kernel = kernel
        self.issued = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.untyped = 0
        self.samples: list[Sample] = []
        self.every = max(1, cfg.syscalls // cfg.checkpoints)

    def take(self) -> int | None:
        if self.issued >= self.cfg.syscalls:
            return None
        self.issued += 1
        if self.issued % self.every == 0:
            self.samples.append(sample(self.kernel, self.issued))
        return self.issued

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1
        if not isinstance(exc, AIOSError):
            self.untyped += 1


async def run_soak(cfg: SoakConfig) -> SoakReport:
    """Run the soak in this process and report (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="aios-soak-") as tmp:
        baseline = sample(None, 0)
        config = KernelConfig(backends=[], data_dir=tmp, audit_file=False, metrics_keep=cfg.metrics_keep)
        backend = SimBackend(name="sim", capacity=cfg.capacity, token_time=0.0)
        kernel = Kernel(config, backends={"sim": backend}, entry_points=False)
        started = time.monotonic()
        async with kernel:
            mix = _Mix(cfg, kernel)
            await asyncio.gather(*(_agent(mix, f"soak-{i}", cfg.seed) for i in range(cfg.agents)))
        elapsed = time.monotonic() - started
        del kernel
        after = sample(None, mix.issued)
    return SoakReport(
        syscalls=mix.issued,
        ok=mix.ok,
        errors=dict(sorted(mix.errors.items())),
        untyped=mix.untyped,
        elapsed_s=elapsed,
        samples=mix.samples,
        baseline=baseline,
        after_stop=after,
        ring_default_kb=ring_cost_kb(),
    )


async def _agent(mix: _Mix, agent: str, seed: int) -> None:
    rng = random.Random(f"{seed}/{agent}")
    kernel = mix.kernel
    while (n := mix.take()) is not None:
        try:
            await _one(kernel, agent, n, rng, mix.cfg)
            mix.ok += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            mix.error(exc)


async def _one(kernel: Kernel, agent: str, n: int, rng: random.Random, cfg: SoakConfig) -> None:
    """One syscall of the mix (``n`` is its global number)."""
    if cfg.python_every and n % cfg.python_every == 0:
        res = await kernel.syscall(agent, "tool", "call", name="python", arguments={"code": "print(6 * 7)"})
        if not res.ok or "42" not in str(res.value):
            raise AIOSError(f"sandboxed run failed: {res}")
        return
    u = rng.random()
    if u < 0.45:
        req = LLMRequest(
            messages=[{"role": "user", "content": f"{agent} {n}"}], max_tokens=rng.randint(1, 40)
        )
        await kernel.llm(agent, req, timeout=30)
    elif u < 0.47:
        # A caller that gives up: its syscall is cancelled wherever it is.
        req = LLMRequest(messages=[{"role": "user", "content": f"{agent} {n}"}], max_tokens=64)
        sc = kernel.submit_llm(agent, req, timeout=30)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kernel.wait(sc), 0.0005)
    elif u < 0.48:
        req = LLMRequest(messages=[{"role": "user", "content": f"{agent} {n}"}], max_tokens=8)
        with contextlib.suppress(AIOSError):
            await kernel.llm(agent, req, timeout=1e-6)  # a deadline missed while queued
    elif u < 0.60:
        entry = await kernel.syscall(
            agent, "memory", "add", text=f"soak note {n} " + "x" * rng.randint(1, 200)
        )
        if rng.random() < 0.5:
            await kernel.syscall(agent, "memory", "get", entry_id=entry)
        await kernel.syscall(agent, "memory", "remove", entry_id=entry)
    elif u < 0.75:
        key = f"k{rng.randrange(8)}"
        if rng.random() < 0.5:
            await kernel.syscall(agent, "storage", "write", key=key, value=f"v{n}")
        else:
            with contextlib.suppress(AIOSError):
                await kernel.syscall(agent, "storage", "read", key=key)
    elif u < 0.90:
        res = await kernel.syscall(
            agent, "tool", "call", name="calculator", arguments={"expression": f"{n} * 2"}
        )
        if not res.ok or res.value != n * 2:
            raise AIOSError(f"calculator gave {res}")
    elif u < 0.95:
        with contextlib.suppress(AIOSError):  # bad input: a typed error, and the agent goes on
            await kernel.syscall(agent, "storage", "read", key="")
    else:
        await kernel.syscall(agent, "memory", "recent", n=3)
