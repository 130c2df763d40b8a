"""The three modes on one backend: ``sequential``, ``direct`` and ``kernel`` (one run per policy).

- ``sequential``: the agents one after another, each call straight to the backend (the paper's
  "without AIOS" baseline);
- ``direct``: all agents at once, straight to the backend: the ``openai`` SDK with the kernel
  backend's client settings for HTTP backends, the backend object itself for in-process ones;
- ``kernel``: all agents at once through a ``Kernel`` with the given policy, whose one core is a
  fresh instance of the same backend (capacity = the server's batch slots).

A run is bounded by ``run_timeout``: a stuck backend ends the run with an error, never a hang.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aios.backends.base import Backend
from aios.benchmarks.efficiency.drivers import BackendDriver, CallRecord, Driver, KernelDriver, SDKDriver
from aios.benchmarks.efficiency.stats import AgentRecord, RunRecord, summarize
from aios.benchmarks.efficiency.workload import AgentSpec, LLMStep, Workload, request_for
from aios.config import KernelConfig
from aios.errors import AIOSError, ConfigError, DeadlineExceededError
from aios.kernel import Kernel

BackendKind = Literal["embedded", "openai", "sim"]
MODES = ("sequential", "direct", "kernel")
POLICIES = ("fifo", "rr", "fair", "priority")


@dataclass(slots=True)
class BackendSpec:
    """How to make the backend of one experiment; ``description`` goes into every output."""

    label: str
    kind: BackendKind
    description: str
    capacity: int
    model: str = "default"
    base_url: str | None = None
    model_path: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    timeout: float = 600.0
    #: The sim backend's seconds per generated token (the in-process scalability attribution).
    token_time: float = 0.0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {self.capacity}", field="capacity")
        if self.kind == "openai" and not self.base_url:
            raise ConfigError("an openai backend needs a base_url", field="base_url")

    def backend(self, name: str = "core") -> Backend:
        """A fresh backend instance (not started)."""
        if self.kind == "openai":
            from aios.backends.openai_backend import OpenAIBackend

            assert self.base_url is not None
            return OpenAIBackend(
                name=name,
                base_url=self.base_url,
                model=self.model,
                capacity=self.capacity,
                timeout=self.timeout,
                max_retries=0,
                extra_body=self.extra_body or None,
            )
        if self.kind == "embedded":
            from aios.backends.llamacpp import LlamaCppBackend

            return LlamaCppBackend(name=name, model_path=self.model_path)
        from aios.backends.sim import SimBackend

        return SimBackend(name=name, capacity=self.capacity, token_time=self.token_time)

    def direct_driver(self) -> Driver:
        """The no-kernel driver: the SDK for HTTP backends, the backend object otherwise."""
        if self.kind == "openai":
            assert self.base_url is not None
            return SDKDriver(
                self.base_url,
                self.model,
                capacity=self.capacity,
                timeout=self.timeout,
                extra_body=self.extra_body,
            )
        return BackendDriver(self.backend(), label=self.kind)

    def kernel_driver(self, policy: str, *, slice_tokens: int | None = 32) -> KernelDriver:
        """A kernel with one core (this backend) under ``policy``."""
        cfg = KernelConfig(
            backends=[],
            scheduler=policy,
            slice_tokens=slice_tokens,
            max_queued=10_000_000,
            default_timeout=self.timeout,
        )
        kernel = Kernel(cfg, backends={"core": self.backend()}, entry_points=False)
        return KernelDriver(kernel, label=f"kernel/{policy}")

    def meta(self) -> dict[str, Any]:
        """JSON-able description."""
        return {
            "label": self.label,
            "kind": self.kind,
            "description": self.description,
            "capacity": self.capacity,
            "model": self.model,
            "base_url": self.base_url,
        }


async def _run_agent(
    spec: AgentSpec,
    rec: AgentRecord,
    driver: Driver,
    now: Any,
    *,
    model: str | None,
    delay: float,
    salt: str,
) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    for i, step in enumerate(spec.steps):
        call = CallRecord(
            agent=spec.name, kind="llm" if isinstance(step, LLMStep) else "tool", submitted=now()
        )
        rec.first_submit = min(rec.first_submit, call.submitted)
        rec.calls.append(call)
        try:
            if isinstance(step, LLMStep):
                await driver.llm(spec.name, request_for(spec, i, step, model=model, salt=salt), call, now)
            else:
                await driver.tool(spec.name, step)
        except (AIOSError, OSError, ValueError, RuntimeError) as exc:
            # openai/httpx/litellm errors all derive from one of these; recorded, not raised, so
            # one failed call does not abort a run (the error count is in the summary).
            call.error = type(exc).__name__
        call.finished = now()
    rec.finished = now()


async def run_workload(
    workload: Workload,
    driver: Driver,
    *,
    concurrent: bool,
    model: str | None = None,
    stagger_s: float = 0.0,
    run_timeout: float = 3600.0,
    salt: str = "",
    warmup: int = 0,
) -> RunRecord:
    """Run every agent of ``workload`` through ``driver`` (all at once, or one after another).

    ``stagger_s`` spreads the concurrent agents' starts evenly over that many seconds (an open,
    steady arrival instead of one burst); the run's clock starts before the first agent.
    ``warmup`` untimed calls (one per agent of a throwaway workload, concurrently) open
    connections and warm caches first; they are not in the record.
    """
    records = [AgentRecord(a.name, a.group) for a in workload.agents]
    await driver.start()
    try:
        if warmup > 0:
            first = next(s for s in workload.agents[0].steps if isinstance(s, LLMStep))
            spare = [AgentSpec(f"warmup-{i}", (first,)) for i in range(warmup)]

            def zero() -> float:
                return 0.0

            async with asyncio.timeout(run_timeout):
                await asyncio.gather(
                    *(
                        _run_agent(
                            a,
                            AgentRecord(a.name, "warmup"),
                            driver,
                            zero,
                            model=model,
                            delay=0.0,
                            salt=f"warmup {salt}",
                        )
                        for a in spare
                    )
                )
        gc.collect()
        t0 = time.perf_counter()
        c0 = time.process_time()

        def now() -> float:
            return time.perf_counter() - t0

        n = len(workload.agents)
        try:
            async with asyncio.timeout(run_timeout):
                if concurrent:
                    await asyncio.gather(
                        *(
                            _run_agent(a, r, driver, now, model=model, delay=stagger_s * i / n, salt=salt)
                            for i, (a, r) in enumerate(zip(workload.agents, records, strict=True))
                        )
                    )
                else:
                    for a, r in zip(workload.agents, records, strict=True):
                        await _run_agent(a, r, driver, now, model=model, delay=0.0, salt=salt)
        except TimeoutError:
            raise DeadlineExceededError(
                f"the {driver.label} run took longer than {run_timeout:.0f} s"
            ) from None
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        await driver.close()
    return RunRecord(records, wall, cpu)


async def run_mode(
    spec: BackendSpec,
    workload: Workload,
    mode: str,
    *,
    policy: str = "fifo",
    slice_tokens: int | None = 32,
    run_timeout: float = 3600.0,
    warmup: int = 0,
) -> dict[str, Any]:
    """One mode on ``spec``'s backend: the summary, plus the kernel's own accounting in kernel mode."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}", field="mode")
    name = f"kernel/{policy}" if mode == "kernel" else mode
    if mode == "kernel":
        kd = spec.kernel_driver(policy, slice_tokens=slice_tokens)
        run = await run_workload(
            workload, kd, concurrent=True, run_timeout=run_timeout, salt=name, warmup=warmup
        )
        out = summarize(run)
        out["kernel"] = _kernel_accounting(kd.kernel, workload, warmup=warmup)
    else:
        driver = spec.direct_driver()
        run = await run_workload(
            workload, driver, concurrent=mode == "direct", run_timeout=run_timeout, salt=name, warmup=warmup
        )
        out = summarize(run)
    out["mode"] = mode
    out["policy"] = policy if mode == "kernel" else None
    out["name"] = name
    return out


def _kernel_accounting(kernel: Kernel, workload: Workload, *, warmup: int = 0) -> dict[str, Any]:
    """What the kernel itself recorded: finished syscalls, per kind, preemptions, its latency view.

    Warm-up calls went through the same kernel; they are left out of the counts.
    """
    m = kernel.metrics
    warm = {a for a in m.agents if a.startswith("warmup-")}
    by_kind: dict[str, int] = {}
    for a in m.agents.values():
        if a.agent in warm:
            continue
        for k, v in a.by_kind.items():
            by_kind[k] = by_kind.get(k, 0) + v
    return {
        "finished": m.finished - sum(m.agents[a].syscalls for a in warm),
        "expected": workload.syscalls,
        "by_kind": by_kind,
        "agents": len(m.agents) - len(warm),
        "preemptions": m.preemptions,
        "errors": dict(m.errors),
        "llm_latency_s": m.latency_summary("llm"),
        "max_running": {name: c.max_running for name, c in kernel.dispatcher.cores.items()},
    }
